"""A batched adaptive Runge–Kutta integrator (Dormand–Prince 8(5,3), float64) for many small
autonomous ODEs ``ẏ = f(y)`` at once — one per seed, initial condition or target.

Every member of the batch has its own time, step size and error control (the algorithm and
constants of SciPy's ``DOP853``), so a member whose flow turns singular or stiff stops alone —
its step size collapses or it runs out of evaluations — and is reported with the time it reached,
while the others go on. Each stage evaluates ``f`` once on all active members (batched tensor
operations), which is what makes many seeds cost little more than one. Steps are shortened to
land exactly on the requested output times (no interpolation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.integrate._ivp import dop853_coefficients as _dop

__all__ = ["BatchSolution", "dop853"]

_STAGES = _dop.N_STAGES
_A, _B, _C = _dop.A[:_STAGES, :_STAGES], _dop.B, _dop.C[:_STAGES]
_E3, _E5 = _dop.E3, _dop.E5
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERROR_EXPONENT = -1.0 / 8.0          # the error estimator is of order 7
EVALUATIONS_PER_STEP = _STAGES         # FSAL: the 13th stage is the next step's first


@dataclass
class BatchSolution:
    """``states[b, k]`` is member ``b`` at ``times[b, k]`` (NaN after a failure); ``reached[b]`` is
    the time member ``b`` reached (its last time when it succeeded) and ``last[b]`` its state there;
    ``messages[b]`` is ``""`` on success, else why it stopped."""

    times: np.ndarray
    states: np.ndarray
    reached: np.ndarray
    last: np.ndarray
    evaluations: np.ndarray
    messages: list[str]

    @property
    def success(self) -> np.ndarray:
        return np.array([m == "" for m in self.messages])


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1).sqrt()


def dop853(fun: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor, times: np.ndarray, *,
           rtol: float = 1e-10, atol: float = 1e-12, max_evaluations: int | None = None) -> BatchSolution:
    """Integrate ``ẏ = fun(y, members)`` for every member of the batch ``y0`` (``B × P``, float64).

    ``fun`` gets the states of the active members (``b × P``) and their indices (``b``) and returns
    their derivatives. ``times`` is ``B × T`` (or ``T``, shared), increasing, starting at 0. A member
    fails when its step falls below the spacing of floating-point numbers at its time, when its
    state or error estimate stops being finite, or after ``max_evaluations`` evaluations of ``fun``."""
    y0 = y0.detach().to(torch.float64)
    batch, size = y0.shape
    times = np.broadcast_to(np.asarray(times, dtype=float), (batch, np.shape(times)[-1])).copy()
    if times.shape[1] < 1 or np.any(times[:, 0] != 0) or np.any(np.diff(times, axis=1) <= 0):
        raise ValueError("times must be increasing and start at 0")
    n_times = times.shape[1]
    states = np.full((batch, n_times, size), np.nan)
    states[:, 0] = y0.cpu().numpy()
    grid = torch.as_tensor(times, dtype=torch.float64, device=y0.device)
    a, b5, e3, e5 = (torch.as_tensor(m, dtype=torch.float64, device=y0.device) for m in (_A, _B, _E3, _E5))

    everyone = torch.arange(batch, device=y0.device)
    t = torch.zeros(batch, dtype=torch.float64, device=y0.device)
    y, f = y0.clone(), fun(y0, everyone)
    evaluations = np.ones(batch, dtype=np.int64)
    # Initial step (Hairer, Nørsett & Wanner, Sec. II.4; as SciPy's select_initial_step).
    scale = atol + y.abs() * rtol
    d0, d1 = _rms(y / scale), _rms(f / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
    h0 = torch.minimum(h0, grid[:, -1])
    f1 = fun(y + h0[:, None] * f, everyone)
    evaluations += 1
    d2 = _rms((f1 - f) / scale) / h0
    h1 = torch.where((d1 <= 1e-15) & (d2 <= 1e-15), torch.clamp(h0 * 1e-3, min=1e-6),
                     (0.01 / torch.maximum(d1, d2).clamp_min(1e-300)) ** (1.0 / 8.0))
    h = torch.minimum(torch.minimum(100 * h0, h1), grid[:, -1])

    next_k = torch.ones(batch, dtype=torch.long, device=y0.device)
    rejected_before = torch.zeros(batch, dtype=torch.bool, device=y0.device)
    messages = [""] * batch
    active = torch.full((batch,), n_times > 1, dtype=torch.bool, device=y0.device)
    while bool(active.any()):
        idx = active.nonzero().squeeze(1)
        tb, yb, fb, hb = t[idx], y[idx], f[idx], h[idx]
        goal = grid[idx, next_k[idx]]
        lands = hb >= goal - tb
        step = torch.where(lands, goal - tb, hb)
        k = torch.empty(*yb.shape, _STAGES + 1, dtype=yb.dtype, device=yb.device)
        k[..., 0] = fb
        for s in range(1, _STAGES):
            k[..., s] = fun(yb + step[:, None] * (k[..., :s] @ a[s, :s]), idx)
        y_new = yb + step[:, None] * (k[..., :_STAGES] @ b5)
        f_new = fun(y_new, idx)
        k[..., _STAGES] = f_new
        evaluations[idx.cpu().numpy()] += _STAGES
        scale = atol + torch.maximum(yb.abs(), y_new.abs()) * rtol
        err5 = ((k @ e5) / scale).pow(2).sum(-1)
        err3 = ((k @ e3) / scale).pow(2).sum(-1)
        denominator = (err5 + 0.01 * err3) * size
        error = torch.where(denominator > 0, step.abs() * err5 / denominator.clamp_min(1e-300).sqrt(),
                            torch.zeros_like(err5))
        finite = torch.isfinite(error) & torch.isfinite(y_new).all(-1) & torch.isfinite(f_new).all(-1)
        accept = finite & (error < 1)
        grow = torch.where(error == 0, torch.full_like(error, _MAX_FACTOR),
                           torch.clamp(_SAFETY * error.clamp_min(1e-300) ** _ERROR_EXPONENT, max=_MAX_FACTOR))
        grow = torch.where(rejected_before[idx], torch.clamp(grow, max=1.0), grow)
        shrink = torch.where(finite, torch.clamp(_SAFETY * error.clamp_min(1e-300) ** _ERROR_EXPONENT,
                                                 min=_MIN_FACTOR), torch.full_like(error, _MIN_FACTOR))
        # A step shortened to land on an output time says little about the step size that works.
        proposal = torch.where(lands, torch.maximum(step * grow, hb), step * grow)
        h[idx] = torch.where(accept, proposal, step * shrink)
        rejected_before[idx] = ~accept
        t_new = torch.where(lands, goal, tb + step)
        t[idx] = torch.where(accept, t_new, tb)
        y[idx] = torch.where(accept[:, None], y_new, yb)
        f[idx] = torch.where(accept[:, None], f_new, fb)

        landed = (accept & lands).cpu().numpy()
        members, positions = idx.cpu().numpy(), next_k[idx].cpu().numpy()
        if landed.any():
            states[members[landed], positions[landed]] = y_new[torch.as_tensor(landed, device=y0.device)].cpu().numpy()
            next_k[idx[torch.as_tensor(landed, device=y0.device)]] += 1
        done = next_k[idx] >= n_times
        tb, hb = t[idx], h[idx]
        collapsed = ~(hb >= 10 * (torch.nextafter(tb, torch.full_like(tb, np.inf)) - tb)) & ~done
        exhausted = torch.zeros_like(done)
        if max_evaluations is not None:
            exhausted = torch.as_tensor(evaluations[members] > max_evaluations, device=y0.device) & ~done & ~collapsed
        for j in (collapsed | exhausted).nonzero().squeeze(1).tolist():
            messages[members[j]] = (f"step size collapsed at t = {float(tb[j]):.4g} (singular or stiff)" if collapsed[j]
                                    else f"needed more than {max_evaluations} evaluations and stopped at "
                                         f"t = {float(tb[j]):.4g} (singular or stiff)")
        active[idx] = ~(done | collapsed | exhausted)
    return BatchSolution(times=times, states=states, reached=t.cpu().numpy(), last=y.cpu().numpy(),
                         evaluations=evaluations, messages=messages)
