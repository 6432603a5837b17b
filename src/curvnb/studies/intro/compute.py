"""The computation of the intro chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.intro.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from curvnb.seeds import declare_streams

# Every random draw of the chapter: the quadratic's eigenbasis and the start point (one unit each).
STREAMS = declare_streams("intro", {"matrix": ("test", 1), "init": ("test", 1)})


@dataclass(frozen=True)
class Config:
    dim: int = 20
    condition: float = 100.0
    steps: int = 1000
    step_ratios: tuple[float, ...] = (0.5, 0.9, 0.99, 1.01, 1.1)  # η in units of 2/λ_max


PROFILES = {"quick": Config(), "full": Config(dim=500, condition=1e3, steps=3000),
            "smoke": Config(dim=10, steps=300)}  # tiny: every code path in seconds (tests)


def quadratic(dim: int, condition: float, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """A random SPD matrix with eigenvalues log-spaced in ``[1, condition]`` (eigenbasis from ``generator``)."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=dtype))
    eig = torch.logspace(0, float(np.log10(condition)), dim, dtype=dtype)
    return (q * eig) @ q.T


def problem(dim: int, condition: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The quadratic ``A`` and start point ``θ₀`` of chapter seed ``seed`` (declared streams)."""
    a = quadratic(dim, condition, STREAMS.torch(seed, "matrix"))
    return a, torch.randn(dim, generator=STREAMS.torch(seed, "init"), dtype=a.dtype)


def gd_losses(a: torch.Tensor, theta0: torch.Tensor, lr: float, steps: int) -> np.ndarray:
    """Loss ``½ θᵀAθ`` along ``steps`` steps of gradient descent (loss at step 0 included)."""
    theta, losses = theta0.clone(), []
    for _ in range(steps + 1):
        grad = a @ theta
        losses.append(0.5 * float(theta @ grad))
        theta = theta - lr * grad
    return np.array(losses)


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    a, theta0 = problem(config.dim, config.condition, seed)
    a, theta0 = a.to(device), theta0.to(device)
    eig = torch.linalg.eigvalsh(a)
    lam_max, lam_min = float(eig[-1]), float(eig[0])
    curves = {r: gd_losses(a, theta0, r * 2 / lam_max, config.steps) for r in config.step_ratios}
    return {"lambda_max": lam_max, "lambda_min": lam_min, "curves": curves,
            "eigenvalues": eig.cpu().numpy()}
