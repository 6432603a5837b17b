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

from curvnb.config import single_thread
from curvnb.curvature.matrix_functions import spectral_cutoff, symmetric_power
from curvnb.linear.network import end_to_end, partial_products
from curvnb.linear.ode import dop853

__all__ = ["RULES", "loss", "losses", "layer_gradients", "function_space_kernel", "full_natural_direction",
           "kronecker_direction", "block_natural_direction", "weight_velocity", "conserved_quantities",
           "conservation_drift", "conservation_drifts", "IntegrationError", "Trajectory", "integrate", "euler_steps", "natural_gradient_maps",
           "singular_time"]

RULES = ("full", "block")


def _check_rule(rule: str, alpha: float) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: allowed values are {', '.join(map(repr, RULES))}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the fractional power alpha must lie in [0, 1], got {alpha}")


def loss(weights: Sequence[torch.Tensor], target: torch.Tensor) -> float:
    """``½‖W − S‖_F²`` of one network."""
    return 0.5 * float(((end_to_end(weights) - target) ** 2).sum())


def losses(weights: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``½‖W − S‖_F²`` of each network of a batch (shape: the batch dimensions)."""
    return 0.5 * ((end_to_end(weights) - target) ** 2).sum(dim=(-2, -1))


def layer_gradients(weights: Sequence[torch.Tensor], target: torch.Tensor) -> list[torch.Tensor]:
    """``∇_{W_i} L = B_iᵀ (W − S) A_iᵀ`` for whitened inputs."""
    before, after = partial_products(weights)
    error = after[0] @ weights[0] - target
    return [b.mT @ error @ a.mT for a, b in zip(before, after)]


def function_space_kernel(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``JJᵀ = Σ_i (B_iB_iᵀ) ⊗ (A_iᵀA_i)`` on the row-major ``vec W``."""
    return _kernel(*partial_products(weights))


def _kron(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``torch.kron`` of the last two dimensions, batched over the leading ones."""
    (m, n), (p, q) = x.shape[-2:], y.shape[-2:]
    product = x[..., :, None, :, None] * y[..., None, :, None, :]
    return product.reshape(*product.shape[:-4], m * p, n * q)


def _kernel(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(_kron(b @ b.mT, a.mT @ a) for a, b in zip(before, after))


def _batched(fn, matrix: torch.Tensor, *args):
    """``fn(matrix, *args)`` for one matrix, or mapped (``torch.func.vmap``) over leading batch dims."""
    if matrix.ndim == 2:
        return fn(matrix, *args)
    flat = matrix.reshape(-1, *matrix.shape[-2:])
    out = torch.func.vmap(lambda m: fn(m, *args))(flat)
    return torch.utils._pytree.tree_map(lambda o: o.reshape(*matrix.shape[:-2], *o.shape[1:]), out)


def _symmetric_powers(matrices: Sequence[torch.Tensor], power: float, damping: float,
                      rcond: float) -> list[torch.Tensor]:
    """:func:`~curvnb.curvature.matrix_functions.symmetric_power` of each matrix; batched matrices of one
    shape go through one mapped call (one call per evaluation, not one per factor and seed)."""
    out: list[torch.Tensor | None] = [None] * len(matrices)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(matrices):
        groups.setdefault(tuple(m.shape), []).append(i)
    power_of = lambda m: symmetric_power(m, power, damping=damping, rcond=rcond)  # noqa: E731
    for shape, members in groups.items():
        if len(shape) == 2:        # one network: exactly the optimizers' path
            for i in members:
                out[i] = power_of(matrices[i])
            continue
        stacked = _batched(power_of, torch.stack([matrices[i] for i in members]))
        for j, i in enumerate(members):
            out[i] = stacked[j]
    return out  # type: ignore[return-value]


def full_natural_direction(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], alpha: float, *,
                           damping: float = 0.0, rcond: float = 1e-12) -> list[torch.Tensor]:
    """``(G + δ)^{−α} g`` for ``G = JᵀJ`` and a gradient ``g = Jᵀu`` (any loss of the map ``W``).

    Solved in function space: ``u = (JJᵀ)⁺ J g`` and ``(G + δ)^{−α} Jᵀu = Jᵀ (JJᵀ + δ)^{−α} u``
    (push-through identity), one eigendecomposition of the ``n_out n_in`` kernel. Weights and
    gradients may carry leading batch dimensions (one network per seed)."""
    _check_rule("full", alpha)
    if alpha == 0.0:
        return [g.clone() for g in grads]
    before, after = partial_products(weights)
    eigenvalues, q, kept = _batched(spectral_cutoff, _kernel(before, after), rcond)
    mapped = sum(b @ g @ a for a, b, g in zip(before, after, grads))                 # J g
    mapped = mapped.reshape(*mapped.shape[:-2], -1)
    safe = torch.where(kept, eigenvalues, torch.ones_like(eigenvalues))
    scale = torch.where(kept, (safe + damping) ** (-alpha) / safe, torch.zeros_like(eigenvalues))
    coefficients = scale * (q.mT @ mapped.unsqueeze(-1)).squeeze(-1)
    direction_map = (q @ coefficients.unsqueeze(-1)).reshape(*mapped.shape[:-1], after[0].shape[-2],
                                                             before[0].shape[-1])
    return [b.mT @ direction_map @ a.mT for a, b in zip(before, after)]              # Jᵀ(·)


def kronecker_direction(grad: torch.Tensor, output_factor: torch.Tensor, input_factor: torch.Tensor,
                        alpha: float, *, damping: float = 0.0, rcond: float = 1e-12) -> torch.Tensor:
    """``(B + δ)^{−α} ∇W (A + δ)^{−α}``: the Kronecker-factored fractional preconditioner of one layer."""
    if alpha == 0.0:
        return grad.clone()
    left, right = _symmetric_powers([output_factor, input_factor], -alpha, damping, rcond)
    return left @ grad @ right


def block_natural_direction(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], alpha: float, *,
                            damping: float = 0.0, rcond: float = 1e-12) -> list[torch.Tensor]:
    """Layer-wise ``(B_iᵀB_i)^{−α} g_i (A_iA_iᵀ)^{−α}``: exact block-diagonal Gauss–Newton factors
    of a deep linear network under whitened inputs (leading batch dimensions allowed)."""
    _check_rule("block", alpha)
    if alpha == 0.0:
        return [g.clone() for g in grads]
    before, after = partial_products(weights)
    factors = [m for a, b in zip(before, after) for m in (b.mT @ b, a @ a.mT)]
    powers = _symmetric_powers(factors, -alpha, damping, rcond)
    return [left @ g @ right for left, right, g in zip(powers[0::2], powers[1::2], grads)]


def weight_velocity(weights: Sequence[torch.Tensor], target: torch.Tensor, rule: str = "full",
                    alpha: float = 0.0, *, rcond: float = 1e-12) -> list[torch.Tensor]:
    """``dW_i/dt`` (time in units of τ = 1/η) under ``rule`` with fractional power ``alpha``
    (leading batch dimensions allowed: one network and target per seed)."""
    _check_rule(rule, alpha)
    grads = layer_gradients(weights, target)
    direction = (full_natural_direction if rule == "full" else block_natural_direction)(
        weights, grads, alpha, rcond=rcond)
    return [-d for d in direction]


def conserved_quantities(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``C_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ`` (``d − 1`` matrices), conserved by every update of the
    form ``Ẇ_i = B_iᵀ Z A_iᵀ`` with one ``Z`` shared by all layers (GD, NGD, full fractional)."""
    return [w_next.mT @ w_next - w @ w.mT for w, w_next in zip(weights[:-1], weights[1:])]


def conservation_drifts(weights0: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``max_i ‖C_i(W) − C_i(W₀)‖_F`` of each network of a batch (shape: the batch dimensions)."""
    pairs = list(zip(conserved_quantities(weights0), conserved_quantities(weights)))
    if not pairs:
        return torch.zeros(weights[0].shape[:-2], dtype=weights[0].dtype)
    return torch.stack([torch.linalg.matrix_norm(c - c0) for c0, c in pairs]).amax(dim=0)


def conservation_drift(weights0: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> float:
    """``max_i ‖C_i(W) − C_i(W₀)‖_F`` of one network."""
    return float(conservation_drifts(weights0, weights))


class IntegrationError(RuntimeError):
    """An integration that did not reach its final time."""


@dataclass
class Trajectory:
    """Weights along integrated trajectories: ``states[..., k, :]`` is the flat weight vector at
    ``times[..., k]``. One flow has ``states`` of shape ``T × P``; a batch of flows ``B × T × P``,
    with ``reached[b]`` the time flow ``b`` reached (NaN states after it) and ``failed[b]`` why it
    stopped (``""`` when it reached its last time)."""

    times: np.ndarray
    states: np.ndarray
    shapes: list[tuple[int, int]]
    reached: np.ndarray | None = None
    failed: list[str] | None = None
    last: np.ndarray | None = None

    def weights(self, k: int) -> list[torch.Tensor]:
        """The weights at output time ``k`` (batched for a batch of flows)."""
        return _unflatten(torch.from_numpy(np.ascontiguousarray(self.states[..., k, :])), self.shapes)

    def weights_at_reached(self) -> list[torch.Tensor]:
        """Batched weights at the time each flow reached (its last time when it succeeded)."""
        return _unflatten(torch.from_numpy(np.ascontiguousarray(self.last)), self.shapes)

    def drifts(self) -> np.ndarray:
        """``max_i ‖C_i(t) − C_i(0)‖_F`` at every output time (``… × T``; NaN where a flow had stopped)."""
        weights0 = self.weights(0)
        return np.stack([conservation_drifts(weights0, self.weights(k)).numpy()
                         for k in range(self.states.shape[-2])], axis=-1)

    def max_drift(self) -> float | np.ndarray:
        """Largest drift of the conserved quantities along each trajectory, over the times it reached
        (including the time a stopped flow reached)."""
        drifts = np.nan_to_num(self.drifts(), nan=-np.inf).max(axis=-1)
        if self.last is not None:
            drifts = np.maximum(drifts, conservation_drifts(self.weights(0), self.weights_at_reached()).numpy())
        return float(drifts) if drifts.ndim == 0 else drifts

    def maps(self) -> np.ndarray:
        """End-to-end maps ``W(t_k)`` stacked (``… × T × n_out × n_in``)."""
        return np.stack([end_to_end(self.weights(k)).numpy() for k in range(self.states.shape[-2])], axis=-3)


def _unflatten(flat: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    parts = torch.split(flat, [r * c for r, c in shapes], dim=-1)
    return [p.reshape(*p.shape[:-1], *s) for p, s in zip(parts, shapes)]


def integrate(weights0: Sequence[torch.Tensor], target: torch.Tensor, times: Sequence[float] | np.ndarray,
              rule: str = "full", alpha: float = 0.0, *, rtol: float = 1e-10, atol: float = 1e-12,
              rcond: float = 1e-12, max_evaluations: int | None = None) -> Trajectory:
    """Integrate ``dW_i/dt = weight_velocity(...)`` (float64, adaptive Dormand–Prince 8(5,3) of
    :mod:`curvnb.linear.ode`).

    ``weights0`` are the layers of one network (``n_i × n_{i−1}``) or of a batch (``B × n_i × n_{i−1}``,
    with ``target`` ``B × n_out × n_in`` or shared); ``times`` (``T``, or ``B × T`` per flow) start at 0.
    Flows that pass near a rank drop of the weights (NGD and block NGD from small random init) become
    singular and the step size collapses; ``max_evaluations`` bounds the work per flow. A single flow
    that does not reach its last time raises :class:`IntegrationError` with the time reached; a flow
    of a batch stops alone and is reported in ``Trajectory.failed`` and ``reached``."""
    _check_rule(rule, alpha)
    times = np.asarray(times, dtype=float)
    if times.ndim not in (1, 2) or np.any(times[..., 0] != 0) or np.any(np.diff(times, axis=-1) <= 0):
        raise ValueError("times must be an increasing 1-D sequence starting at 0 (or one per flow)")
    single = weights0[0].ndim == 2
    weights0 = [w.detach().to(torch.float64).cpu() for w in weights0]
    if single:
        weights0 = [w[None] for w in weights0]
    batch = weights0[0].shape[0]
    shapes = [tuple(w.shape[-2:]) for w in weights0]
    target = target.detach().to(torch.float64).cpu()
    target = target.expand(batch, *target.shape[-2:]) if target.ndim == 2 else target

    def rhs(y: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        velocity = weight_velocity(_unflatten(y, shapes), target[members], rule, alpha, rcond=rcond)
        return torch.cat([v.reshape(v.shape[0], -1) for v in velocity], dim=-1)

    y0 = torch.cat([w.reshape(batch, -1) for w in weights0], dim=-1)
    with single_thread():
        sol = dop853(rhs, y0, times, rtol=rtol, atol=atol, max_evaluations=max_evaluations)
    if single:
        if sol.messages[0]:
            raise IntegrationError(f"the {rule} α={alpha} flow {sol.messages[0]}; it was to reach "
                                   f"t = {times[..., -1].max():g}")
        return Trajectory(times=sol.times[0], states=sol.states[0], shapes=shapes)
    failed = [f"the {rule} α={alpha} flow {m}" if m else "" for m in sol.messages]
    return Trajectory(times=sol.times, states=sol.states, shapes=shapes, reached=sol.reached, failed=failed,
                      last=sol.last)


def euler_steps(weights0: Sequence[torch.Tensor], target: torch.Tensor, rule: str, alpha: float, lr: float,
                steps: int, *, record_every: int = 10, rcond: float = 1e-12) -> dict[str, np.ndarray]:
    """Discrete steps ``W_i ← W_i + lr · dW_i/dt`` for a batch of networks (``B × n_i × n_{i−1}``, one per seed).

    On whitened teacher data this is exactly the step of :class:`curvnb.optim.FractionalNaturalGradient`
    (``rule="full"``, α = 0 is gradient descent) and of :class:`curvnb.optim.BlockDiagonalNaturalGradient`
    (``"block"``, loss ``"mse"``) — tested — taken for all seeds at once. A network whose update
    stops being finite is frozen, as the optimizers' ``on_nonfinite="mark"`` does.

    Returns ``step`` (recorded steps, ``R``), ``norms`` (``B × R × d``, ``‖W_i‖_F``), ``drift`` (``B × R``,
    conserved-quantity drift from the start), ``loss`` (``B × R``), ``step_norms`` (``B × steps``,
    ``‖Δθ‖``; NaN after a divergence) and ``diverged_at`` (``B``, the step that failed, −1 if none)."""
    _check_rule(rule, alpha)
    weights = [w.detach().clone() for w in weights0]
    start = [w.clone() for w in weights]
    batch = weights[0].shape[0]
    step_norms = torch.full((batch, steps), float("nan"), dtype=weights[0].dtype, device=weights[0].device)
    diverged_at = torch.full((batch,), -1, dtype=torch.long, device=weights[0].device)
    recorded: dict[str, list] = {"step": [], "norms": [], "drift": [], "loss": []}

    def record(k: int) -> None:
        recorded["step"].append(k)
        recorded["norms"].append(torch.stack([torch.linalg.matrix_norm(w) for w in weights], dim=-1))
        recorded["drift"].append(conservation_drifts(start, weights))
        recorded["loss"].append(losses(weights, target))

    with single_thread(weights[0].device):
        for k in range(steps):
            if k % record_every == 0:
                record(k)
            update = [lr * v for v in weight_velocity(weights, target, rule, alpha, rcond=rcond)]
            norm = torch.sqrt(sum((u ** 2).sum(dim=(-2, -1)) for u in update))
            ok = torch.isfinite(norm) & (diverged_at < 0)
            diverged_at = torch.where(~torch.isfinite(norm) & (diverged_at < 0), torch.full_like(diverged_at, k),
                                      diverged_at)
            weights = [w + torch.where(ok[:, None, None], u, torch.zeros_like(u)) for w, u in zip(weights, update)]
            step_norms[:, k] = torch.where(ok, norm, torch.full_like(norm, float("nan")))
        record(steps)
    out = {key: torch.stack(v, dim=1).cpu().numpy() for key, v in recorded.items() if key != "step"}
    return {"step": np.asarray(recorded["step"]), **out, "step_norms": step_norms.cpu().numpy(),
            "diverged_at": diverged_at.cpu().numpy()}


def singular_time(weights0: Sequence[torch.Tensor], target: torch.Tensor, rate: float) -> np.ndarray:
    """First time ``t ≥ 0`` at which the straight map path ``W(t) = S + (W₀ − S)e^{−rate·t}`` is singular
    (``inf`` if never), for square maps; one value per network of a batch.

    ``det(S + (W₀ − S)u) = det S · det(I − u(I − S⁻¹W₀))`` vanishes at ``u = 1/(1 − λ)`` for a real
    eigenvalue ``λ`` of ``S⁻¹W₀``; ``u = e^{−rate·t} ∈ (0, 1]`` needs ``λ ≤ 0``, at ``t = ln(1 − λ)/rate``.
    Block NGD's map follows this path (``rate = d``) while every layer stays invertible, so its
    parameter flow turns singular there."""
    s = target.detach().to(torch.float64).cpu()
    w0 = end_to_end([w.detach().to(torch.float64).cpu() for w in weights0])
    ratios = torch.linalg.solve(s.expand_as(w0), w0).numpy().reshape(-1, *w0.shape[-2:])
    out = []
    for m in ratios:
        eigenvalues = np.linalg.eigvals(m)
        real = eigenvalues.real[eigenvalues.imag == 0]   # LAPACK returns real eigenvalues with zero imaginary part
        crossing = real[real <= 0]
        out.append(float(np.log1p(-crossing).min() / rate) if crossing.size else np.inf)
    return np.asarray(out).reshape(w0.shape[:-2])


def natural_gradient_maps(weights0: Sequence[torch.Tensor], target: torch.Tensor, times: Sequence[float],
                          rule: str = "full") -> np.ndarray:
    """End-to-end maps under NGD (``rule="full"``) or block-diagonal NGD (``"block"``) in closed form:
    ``W(t) − S = (W₀ − S) e^{−t}`` and ``(W₀ − S) e^{−d t}``.

    Exact while ``J`` (every block ``J_i``) has full row rank. Where ``W`` passes through a rank drop
    the parameter flow is singular (its speed ∝ 1/‖J‖ blows up) and an integrator crawls; the map
    itself moves straight to ``S``. Batched weights give ``B × T × n_out × n_in``."""
    _check_rule(rule, 1.0)
    rate = 1.0 if rule == "full" else float(len(weights0))
    s = target.detach().to(torch.float64).cpu().numpy()
    e0 = end_to_end([w.detach().to(torch.float64).cpu() for w in weights0]).numpy() - s
    decay = np.exp(-rate * np.asarray(times, dtype=float))[:, None, None]
    return s[..., None, :, :] + e0[..., None, :, :] * decay
