"""Curvature-corrected gradient flow of a deep linear network on ``L = ½‖W_d⋯W_1 − S‖_F²``.

Our derivation (see the huh2020 chapter). With ``A_i = W_{i−1}⋯W_1`` and ``B_i = W_d⋯W_{i+1}``
the Jacobian of the (row-major) map ``vec W`` has layer blocks ``J_i = B_i ⊗ A_iᵀ``; the gradient
is ``∇_{W_i} L = B_iᵀ E A_iᵀ`` with ``E = W − S``, and the function-space kernel is
``JJᵀ = Σ_i (B_iB_iᵀ) ⊗ (A_iᵀA_i)`` (size ``n_out n_in``, never the ``P × P`` Gauss–Newton).

Two families of rules, both indexed by the fractional power α (α = 0 is gradient descent):

* full:  ``θ̇ = −G^{−α} ∇L = −Jᵀ (JJᵀ)^{−α} e`` (α = 1 is NGD, ``−J⁺e``);
* block: ``Ẇ_i = −(B_iᵀB_i)^{−α} ∇_{W_i}L (A_iA_iᵀ)^{−α}`` (α = 1 is layer-wise NGD, exact K-FAC).

The functions take the layer gradients, not ``E``: the optimizers in :mod:`curvnb.optim` call
them with autograd's gradients, the integrator below with the closed-form ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.integrate import solve_ivp

from curvnb.curvature.matrix_functions import spectral_cutoff, symmetric_power
from curvnb.linear.network import end_to_end, partial_products

__all__ = ["RULES", "loss", "layer_gradients", "function_space_kernel", "full_natural_direction",
           "kronecker_direction", "block_natural_direction", "weight_velocity", "conserved_quantities",
           "conservation_drift", "IntegrationError", "Trajectory", "integrate", "natural_gradient_maps"]

RULES = ("full", "block")


def _check_rule(rule: str, alpha: float) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: allowed values are {', '.join(map(repr, RULES))}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the fractional power alpha must lie in [0, 1], got {alpha}")


def loss(weights: Sequence[torch.Tensor], target: torch.Tensor) -> float:
    """``½‖W − S‖_F²``."""
    return 0.5 * float(((end_to_end(weights) - target) ** 2).sum())


def layer_gradients(weights: Sequence[torch.Tensor], target: torch.Tensor) -> list[torch.Tensor]:
    """``∇_{W_i} L = B_iᵀ (W − S) A_iᵀ`` for whitened inputs."""
    before, after = partial_products(weights)
    error = after[0] @ weights[0] - target
    return [b.T @ error @ a.T for a, b in zip(before, after)]


def function_space_kernel(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``JJᵀ = Σ_i (B_iB_iᵀ) ⊗ (A_iᵀA_i)`` on the row-major ``vec W``."""
    return _kernel(*partial_products(weights))


def _kernel(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(torch.kron(b @ b.T, a.T @ a) for a, b in zip(before, after))


def full_natural_direction(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], alpha: float, *,
                           damping: float = 0.0, rcond: float = 1e-12) -> list[torch.Tensor]:
    """``(G + δ)^{−α} g`` for ``G = JᵀJ`` and a gradient ``g = Jᵀu`` (any loss of the map ``W``).

    Solved in function space: ``u = (JJᵀ)⁺ J g`` and ``(G + δ)^{−α} Jᵀu = Jᵀ (JJᵀ + δ)^{−α} u``
    (push-through identity), one eigendecomposition of the ``n_out n_in`` kernel."""
    _check_rule("full", alpha)
    if alpha == 0.0:
        return [g.clone() for g in grads]
    before, after = partial_products(weights)
    eigenvalues, q, kept = spectral_cutoff(_kernel(before, after), rcond)
    mapped = sum(b @ g @ a for a, b, g in zip(before, after, grads)).reshape(-1)   # J g
    safe = torch.where(kept, eigenvalues, torch.ones_like(eigenvalues))
    scale = torch.where(kept, (safe + damping) ** (-alpha) / safe, torch.zeros_like(eigenvalues))
    direction_map = (q @ (scale * (q.T @ mapped))).reshape(after[0].shape[0], before[0].shape[1])
    return [b.T @ direction_map @ a.T for a, b in zip(before, after)]                # Jᵀ(·)


def kronecker_direction(grad: torch.Tensor, output_factor: torch.Tensor, input_factor: torch.Tensor,
                        alpha: float, *, damping: float = 0.0, rcond: float = 1e-12) -> torch.Tensor:
    """``(B + δ)^{−α} ∇W (A + δ)^{−α}``: the Kronecker-factored fractional preconditioner of one layer."""
    if alpha == 0.0:
        return grad.clone()
    left = symmetric_power(output_factor, -alpha, damping=damping, rcond=rcond)
    right = symmetric_power(input_factor, -alpha, damping=damping, rcond=rcond)
    return left @ grad @ right


def block_natural_direction(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], alpha: float, *,
                            damping: float = 0.0, rcond: float = 1e-12) -> list[torch.Tensor]:
    """Layer-wise ``(B_iᵀB_i)^{−α} g_i (A_iA_iᵀ)^{−α}``: exact block-diagonal Gauss–Newton factors
    of a deep linear network under whitened inputs."""
    _check_rule("block", alpha)
    before, after = partial_products(weights)
    return [kronecker_direction(g, b.T @ b, a @ a.T, alpha, damping=damping, rcond=rcond)
            for a, b, g in zip(before, after, grads)]


def weight_velocity(weights: Sequence[torch.Tensor], target: torch.Tensor, rule: str = "full",
                    alpha: float = 0.0, *, rcond: float = 1e-12) -> list[torch.Tensor]:
    """``dW_i/dt`` (time in units of τ = 1/η) under ``rule`` with fractional power ``alpha``."""
    _check_rule(rule, alpha)
    grads = layer_gradients(weights, target)
    direction = (full_natural_direction if rule == "full" else block_natural_direction)(
        weights, grads, alpha, rcond=rcond)
    return [-d for d in direction]


def conserved_quantities(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``C_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ`` (``d − 1`` matrices), conserved by every update of the
    form ``Ẇ_i = B_iᵀ Z A_iᵀ`` with one ``Z`` shared by all layers (GD, NGD, full fractional)."""
    return [w_next.T @ w_next - w @ w.T for w, w_next in zip(weights[:-1], weights[1:])]


def conservation_drift(weights0: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> float:
    """``max_i ‖C_i(W) − C_i(W₀)‖_F``."""
    pairs = zip(conserved_quantities(weights0), conserved_quantities(weights))
    return max((float(torch.linalg.norm(c - c0)) for c0, c in pairs), default=0.0)


class IntegrationError(RuntimeError):
    """An integration that did not reach its final time."""


@dataclass
class Trajectory:
    """Weights along an integrated trajectory: ``states[k]`` is the flat weight vector at ``times[k]``."""

    times: np.ndarray
    states: np.ndarray
    shapes: list[tuple[int, int]]

    def weights(self, k: int) -> list[torch.Tensor]:
        out, offset = [], 0
        for rows, cols in self.shapes:
            out.append(torch.from_numpy(self.states[k, offset:offset + rows * cols].reshape(rows, cols).copy()))
            offset += rows * cols
        return out

    def max_drift(self) -> float:
        """Largest drift ``max_i ‖C_i(t) − C_i(0)‖_F`` of the conserved quantities along the trajectory."""
        weights0 = self.weights(0)
        return max(conservation_drift(weights0, self.weights(k)) for k in range(len(self.times)))

    def maps(self) -> np.ndarray:
        """End-to-end maps ``W(t_k)`` stacked (``len(times) × n_out × n_in``)."""
        return np.stack([end_to_end(self.weights(k)).numpy() for k in range(len(self.times))])


def integrate(weights0: Sequence[torch.Tensor], target: torch.Tensor, times: Sequence[float], rule: str = "full",
              alpha: float = 0.0, *, rtol: float = 1e-10, atol: float = 1e-12, rcond: float = 1e-12,
              method: str = "DOP853", max_evaluations: int | None = None) -> Trajectory:
    """Integrate ``dW_i/dt = weight_velocity(...)`` with an adaptive Runge–Kutta method (float64).

    ``times`` must start at 0; the returned trajectory holds the weights at each of them. Flows that
    pass near a rank drop of the weights (NGD and block NGD from small random init) become singular
    and the step size collapses: ``max_evaluations`` bounds the work, raising
    :class:`IntegrationError` with the time reached."""
    _check_rule(rule, alpha)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times[0] != 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be an increasing 1-D sequence starting at 0")
    shapes = [tuple(w.shape) for w in weights0]
    sizes = [r * c for r, c in shapes]
    target = target.detach().to(torch.float64).cpu()

    def unflat(y: np.ndarray) -> list[torch.Tensor]:
        parts = np.split(y, np.cumsum(sizes)[:-1])
        return [torch.from_numpy(p.reshape(s)) for p, s in zip(parts, shapes)]

    evaluations = 0

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal evaluations
        evaluations += 1
        if max_evaluations is not None and evaluations > max_evaluations:
            raise IntegrationError(f"the {rule} α={alpha} flow needed more than {max_evaluations} evaluations "
                                   f"and stopped at t = {t:.4g} of {times[-1]:g} (singular or stiff)")
        velocity = weight_velocity(unflat(y), target, rule, alpha, rcond=rcond)
        return torch.cat([v.reshape(-1) for v in velocity]).numpy()

    y0 = torch.cat([w.detach().to(torch.float64).cpu().reshape(-1) for w in weights0]).numpy()
    sol = solve_ivp(rhs, (0.0, float(times[-1])), y0, method=method, t_eval=times, rtol=rtol, atol=atol)
    if not sol.success:
        raise IntegrationError(f"integration of the {rule} α={alpha} flow failed: {sol.message}")
    return Trajectory(times=sol.t, states=sol.y.T.copy(), shapes=shapes)


def natural_gradient_maps(weights0: Sequence[torch.Tensor], target: torch.Tensor, times: Sequence[float],
                          rule: str = "full") -> np.ndarray:
    """End-to-end maps under NGD (``rule="full"``) or block-diagonal NGD (``"block"``) in closed form:
    ``W(t) − S = (W₀ − S) e^{−t}`` and ``(W₀ − S) e^{−d t}``.

    Exact while ``J`` (every block ``J_i``) has full row rank. Where ``W`` passes through a rank drop
    the parameter flow is singular (its speed ∝ 1/‖J‖ blows up) and an integrator crawls; the map
    itself moves straight to ``S``."""
    _check_rule(rule, 1.0)
    rate = 1.0 if rule == "full" else float(len(weights0))
    s = target.detach().to(torch.float64).cpu().numpy()
    e0 = end_to_end([w.detach().to(torch.float64).cpu() for w in weights0]).numpy() - s
    return s[None] + e0[None] * np.exp(-rate * np.asarray(times, dtype=float))[:, None, None]
