"""Glass-curvature estimators (Duersch et al. 2024): gradient differences at perturbed parameters.

Three gradients at ``ν + σz``, ``ν − σz`` and ``ν`` (``z`` Rademacher ±1 per parameter), all with
the same data (and so the same randomness), give elementwise samples of

* the Hessian diagonal, ``h = |g₊ − g₋| / (2σ)`` (``"abs"``) or ``((g₊ − g₋) / (2σ))²`` (``"rms"``,
  whose running mean is square-rooted by the optimizer);
* the kernel-averaged gradient ``ḡ = (g₊ + g₋) / 2``;
* the glass density ``ρ = 2 (ḡ − g₀)² / σ``.

For a smooth loss ``ḡ − g₀ = O(σ²)``, so ``(ḡ − g₀)²`` scales like ``σ⁴`` and ``ρ → 0``; each ReLU
boundary crossed inside the kernel adds a gradient jump, and with a density of boundaries the
expected number of crossings grows like ``σ``, so ``(ḡ − g₀)² ∝ σ`` and ``ρ`` is σ-independent:
the *glass* signature. ``ρ`` is the variance of the gradient's jump part per unit of step length.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from curvnb.curvature.operators import loss_and_grad
from curvnb.curvature.params import trainable_parameters, unflatten_like
from curvnb.seeds import cpu_generator

__all__ = ["rademacher", "perturbed_gradients", "hessian_diagonal_samples", "glass_density_samples",
           "kernel_averaged_gradient", "gradient_variation", "loglog_slope", "GLASS_LOSS_COEFFICIENT"]

#: E|∫₀ᵗ W(u) du| = sqrt(2/(3π)) sqrt(ρ) t^{3/2} for a gradient random walk W of variance rate ρ.
#: It is the glass term whose minimisation gives Alice's glass curvature α = (3/(4π)) ρ / a.
GLASS_LOSS_COEFFICIENT = float(np.sqrt(2.0 / (3.0 * np.pi)))


def rademacher(n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` independent ±1 entries drawn on the CPU from ``generator`` (same values on any device)."""
    bits = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64)
    return (2 * bits - 1).to(dtype=dtype, device=device)


@torch.no_grad()
def _shift(params: Sequence[torch.Tensor], delta: torch.Tensor, scale: float) -> None:
    for p, d in zip(params, unflatten_like(delta, params)):
        p.add_(d, alpha=scale)


def perturbed_gradients(model: nn.Module, loss_fn: Callable, data: Any, sigma: float,
                        z: torch.Tensor, *, reduction: str | None = None) -> dict[str, Any]:
    """Flat gradients at ``ν + σz``, ``ν − σz`` and ``ν`` (the model's parameters), same data for all.

    Returns ``{"g_plus", "g_minus", "g0", "loss_plus", "loss_minus", "loss0"}``. The parameters
    are restored exactly afterwards (they are saved and copied back, not shifted back). ``reduction``
    as for :func:`~curvnb.curvature.loss_and_grad` (required for a plain loss function)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    params = trainable_parameters(model)
    saved = [p.detach().clone() for p in params]
    z = z.to(dtype=saved[0].dtype, device=saved[0].device)
    out: dict[str, Any] = {}
    try:
        for name, s in (("plus", sigma), ("minus", -sigma)):
            _shift(params, z, s)
            out[f"loss_{name}"], out[f"g_{name}"] = loss_and_grad(model, loss_fn, data, reduction=reduction)
            with torch.no_grad():
                for p, v in zip(params, saved):
                    p.copy_(v)
        out["loss0"], out["g0"] = loss_and_grad(model, loss_fn, data, reduction=reduction)
    finally:
        with torch.no_grad():
            for p, v in zip(params, saved):
                p.copy_(v)
    return out


def hessian_diagonal_samples(g_plus: torch.Tensor, g_minus: torch.Tensor, sigma: float,
                             method: str = "abs") -> torch.Tensor:
    """Elementwise Hessian-diagonal samples from a central difference along ``±σz``.

    ``"abs"``: ``|g₊ − g₋| / (2σ)``; ``"rms"``: ``((g₊ − g₋) / (2σ))²`` (average, then take the root)."""
    d = (g_plus - g_minus) / (2 * sigma)
    if method == "abs":
        return d.abs()
    if method == "rms":
        return d.square()
    raise ValueError(f"unknown method {method!r}: allowed values are 'abs', 'rms'")


def kernel_averaged_gradient(g_plus: torch.Tensor, g_minus: torch.Tensor) -> torch.Tensor:
    """``ḡ = (g₊ + g₋) / 2``, the gradient of the loss averaged over the two-point kernel ``ν ± σz``."""
    return 0.5 * (g_plus + g_minus)


def glass_density_samples(g_plus: torch.Tensor, g_minus: torch.Tensor, g0: torch.Tensor,
                          sigma: float) -> torch.Tensor:
    """Elementwise glass-density samples ``ρ = 2 (ḡ − g₀)² / σ``."""
    return 2 * (kernel_averaged_gradient(g_plus, g_minus) - g0).square() / sigma


def gradient_variation(model: nn.Module, loss_fn: Callable, data: Any, sigmas: Sequence[float], *,
                       num_samples: int = 4, seed: int = 0, hessian_method: str = "abs",
                       groups: Sequence[tuple[str, slice]] | None = None,
                       reduction: str | None = None,
                       directions: Sequence[torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """Mean gradient-difference statistics at each σ (the same ``num_samples`` Rademacher z for every σ).

    Returns arrays of shape ``(len(sigmas),)``: ``even`` = mean (ḡ − g₀)², ``odd`` = mean ((g₊ − g₋)/2)²,
    ``rho`` = mean glass density, ``hess`` = mean Hessian-diagonal sample, ``absgrad`` = mean |g₀|;
    with ``groups`` (name, slice of the flat parameter vector) also ``<key>/<name>`` for the last three.
    ``directions``: the z to use (e.g. drawn from a chapter's declared stream); by default
    ``num_samples`` Rademacher vectors from ``seed`` (any 64-bit seed, :func:`curvnb.seeds.cpu_generator`)."""
    params = trainable_parameters(model)
    P = sum(p.numel() for p in params)
    if directions is None:
        gen = cpu_generator(seed)
        zs = [rademacher(P, generator=gen, dtype=params[0].dtype, device=params[0].device) for _ in range(num_samples)]
    else:
        zs = list(directions)
        if not zs or any(z.shape != (P,) for z in zs):
            raise ValueError(f"directions must be a non-empty list of vectors of shape ({P},), one entry per "
                             f"parameter; got shapes {[tuple(z.shape) for z in zs]}")
    num_samples = len(zs)
    keys = ["even", "odd", "rho", "hess", "absgrad"] + [f"{k}/{n}" for n, _ in (groups or [])
                                                      for k in ("rho", "hess", "absgrad")]
    out = {k: np.zeros(len(sigmas)) for k in keys}
    for i, sigma in enumerate(sigmas):
        for z in zs:
            r = perturbed_gradients(model, loss_fn, data, float(sigma), z, reduction=reduction)
            gbar = kernel_averaged_gradient(r["g_plus"], r["g_minus"])
            rho = glass_density_samples(r["g_plus"], r["g_minus"], r["g0"], sigma)
            hess = hessian_diagonal_samples(r["g_plus"], r["g_minus"], sigma, hessian_method)
            out["even"][i] += float((gbar - r["g0"]).square().mean()) / num_samples
            out["odd"][i] += float((0.5 * (r["g_plus"] - r["g_minus"])).square().mean()) / num_samples
            out["rho"][i] += float(rho.mean()) / num_samples
            out["hess"][i] += float(hess.mean()) / num_samples
            out["absgrad"][i] += float(r["g0"].abs().mean()) / num_samples
            for name, sl in groups or []:
                out[f"rho/{name}"][i] += float(rho[sl].mean()) / num_samples
                out[f"hess/{name}"][i] += float(hess[sl].mean()) / num_samples
                out[f"absgrad/{name}"][i] += float(r["g0"][sl].abs().mean()) / num_samples
    return out


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (``nan`` if any ``y`` is not positive)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.any(y <= 0) or len(x) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
