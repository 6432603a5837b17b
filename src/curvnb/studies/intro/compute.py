"""The computation of the intro chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.intro.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Config:
    dim: int = 20
    condition: float = 100.0
    steps: int = 1000
    step_ratios: tuple[float, ...] = (0.5, 0.9, 0.99, 1.01, 1.1)  # η in units of 2/λ_max


PROFILES = {"quick": Config(), "full": Config(dim=500, condition=1e3, steps=3000),
            "smoke": Config(dim=10, steps=300)}  # tiny: every code path in seconds (tests)


def quadratic(dim: int, condition: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    """A random SPD matrix with eigenvalues log-spaced in ``[1, condition]``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=dtype))
    eig = torch.logspace(0, float(np.log10(condition)), dim, dtype=dtype)
    return (q * eig) @ q.T


def gd_losses(a: torch.Tensor, theta0: torch.Tensor, lr: float, steps: int) -> np.ndarray:
    """Loss ``½ θᵀAθ`` along ``steps`` steps of gradient descent (loss at step 0 included)."""
    theta, losses = theta0.clone(), []
    for _ in range(steps + 1):
        grad = a @ theta
        losses.append(0.5 * float(theta @ grad))
        theta = theta - lr * grad
    return np.array(losses)


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    a = quadratic(config.dim, config.condition, seed).to(device)
    eig = torch.linalg.eigvalsh(a)
    lam_max, lam_min = float(eig[-1]), float(eig[0])
    theta0 = torch.randn(config.dim, generator=torch.Generator().manual_seed(seed + 1),
                         dtype=a.dtype).to(device)
    curves = {r: gd_losses(a, theta0, r * 2 / lam_max, config.steps) for r in config.step_ratios}
    return {"lambda_max": lam_max, "lambda_min": lam_min, "curves": curves,
            "eigenvalues": eig.cpu().numpy()}
