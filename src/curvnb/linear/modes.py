"""One singular mode of a deep linear network: ``w = ∏ a_i`` learning a target singular value ``s``.

From balanced, aligned initial conditions every rule of :mod:`curvnb.linear.dynamics` reduces to
``τẇ = c · w^p · (s − w)`` (our derivation, checked against the matrix flow in the tests) with

* full fractional:  ``c = d^{1−α}``, ``p = (1 − α)(2 − 2/d)``  (α = 0 GD, α = 1 NGD);
* block fractional: ``c = d``,      ``p = (1 − α)(2 − 2/d)``  (α = 1 block-diagonal NGD).

Closed forms exist for ``p ∈ {0, ½, 1}`` (exponential, tanh², logistic — the last is Saxe et al.'s
two-layer solution); otherwise ``t(w)`` is a one-dimensional quadrature.
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import quad, solve_ivp

from curvnb.linear.dynamics import _check_rule

__all__ = ["mode_coefficients", "mode_rate", "mode_closed_form", "mode_time", "mode_curve", "plateau_is_finite"]


def mode_coefficients(depth: int, alpha: float, rule: str = "full") -> tuple[float, float]:
    """``(c, p)`` of ``τẇ = c w^p (s − w)``."""
    _check_rule(rule, alpha)
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    p = (1 - alpha) * (2 - 2 / depth)
    c = float(depth) ** (1 - alpha) if rule == "full" else float(depth)
    return c, p


def mode_rate(w: np.ndarray, s: float, depth: int, alpha: float, rule: str = "full") -> np.ndarray:
    """``dw/dt`` in units of 1/τ."""
    c, p = mode_coefficients(depth, alpha, rule)
    w = np.asarray(w, dtype=float)
    return c * w ** p * (s - w)


def mode_closed_form(t: np.ndarray, w0: float, s: float, depth: int, alpha: float,
                     rule: str = "full") -> np.ndarray | None:
    """``w(t)`` in closed form when the exponent ``p`` is 0, ½ or 1; ``None`` otherwise."""
    c, p = mode_coefficients(depth, alpha, rule)
    t = np.asarray(t, dtype=float)
    if np.isclose(p, 0.0):
        return s - (s - w0) * np.exp(-c * t)
    if np.isclose(p, 1.0):
        return s / (1 + (s / w0 - 1) * np.exp(-c * s * t))
    if np.isclose(p, 0.5) and 0 < w0 < s:
        return s * np.tanh(np.arctanh(np.sqrt(w0 / s)) + 0.5 * c * np.sqrt(s) * t) ** 2
    return None


def _check_mode(w0: float, s: float) -> None:
    if not (w0 > 0 and s > 0):
        raise ValueError(f"mode dynamics need w0 > 0 and s > 0, got w0={w0}, s={s}")


def mode_time(w: float, w0: float, s: float, depth: int, alpha: float, rule: str = "full") -> float:
    """Time (units of τ) for the mode to go from ``w0`` to ``w``: ``∫ dw / ẇ``, by quadrature in ``ln w``."""
    _check_mode(w0, s)
    if not (min(w0, s) <= w <= max(w0, s)) or w == s:
        raise ValueError(f"w={w} is not reached from w0={w0} towards s={s}")
    mode_coefficients(depth, alpha, rule)  # validates once; the integrand below is evaluated many times
    integrand = lambda x: np.exp(x) / mode_rate(np.exp(x), s, depth, alpha, rule)  # noqa: E731  (dt/d ln w)
    value, _ = quad(integrand, np.log(w0), np.log(w), epsabs=0.0, epsrel=1e-11, limit=200)
    return float(value)


def mode_curve(t: np.ndarray, w0: float, s: float, depth: int, alpha: float, rule: str = "full", *,
               method: str = "DOP853", rtol: float = 1e-10) -> np.ndarray:
    """``w(t)``: the closed form when there is one, else the mode ODE integrated in ``ln w`` (by default
    Dormand–Prince at rtol 1e-10; ``method="LSODA"`` is much faster over long, stiff tails at ~1e-7 accuracy)."""
    _check_mode(w0, s)
    closed = mode_closed_form(t, w0, s, depth, alpha, rule)
    if closed is not None:
        return closed
    t = np.asarray(t, dtype=float)
    sol = solve_ivp(lambda _t, x: mode_rate(np.exp(x), s, depth, alpha, rule) / np.exp(x), (0.0, float(t.max())),
                    [np.log(w0)], t_eval=t, method=method, rtol=rtol, atol=1e-12)
    if not sol.success:
        raise RuntimeError(f"mode integration failed: {sol.message}")
    return np.exp(sol.y[0])


def plateau_is_finite(depth: int, alpha: float) -> bool:
    """Whether the learning time stays finite as ``w0 → 0``: ``(1 − α)(2 − 2/d) < 1``."""
    return mode_coefficients(depth, alpha)[1] < 1
