"""95 % intervals over independent units (seeds, networks, runs), each with honest coverage.

One method per statistic (:data:`METHODS`), chosen by the claims engine (:mod:`curvnb.claims`):

- medians and other quantiles — :func:`quantile_interval`, exact and distribution-free: two order
  statistics whose ranks come from the binomial distribution (coverage ≥ the level for any
  continuous distribution). A median of fewer than 6 units cannot reach 95 %: the interval is
  unbounded, ``(-inf, inf)``;
- means — :func:`t_interval` (Student t); differences of two independent groups' means —
  :func:`welch_interval`;
- proportions — :func:`clopper_pearson` (exact binomial);
- composite statistics (a ratio or difference of two groups' medians, a slope of medians, ...) —
  :func:`bootstrap`, a vectorised percentile bootstrap whose coverage the tests confirm by
  simulation at :data:`BOOTSTRAP_MIN_UNITS` units and more.

:func:`min_units` says, for a method (and a proportion's threshold), how many units a decision
needs — fixed by the method before a run, never by its answer.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def _distributions():
    """scipy.stats, imported at first use: it costs ~1.3 s, and every chapter kernel imports this
    module (through curvnb.claims) long before it decides a claim."""
    from scipy import stats

    return stats


Interval = tuple[float, float]
LEVEL = 0.95
UNBOUNDED: Interval = (-math.inf, math.inf)
BOOTSTRAP_MIN_UNITS = 8   # per group: percentile bootstrap of two groups' medians within 93-97 % from 8 on
#: Intervals of several groups' medians or proportions that hold together (Bonferroni over exact
#: intervals), for statistics that are functions of them; the statistic's interval is its range over
#: the box they span (exact and conservative, whatever the dependence between groups).
SIMULTANEOUS = ("simultaneous-order-statistic", "simultaneous-clopper-pearson")
METHODS = ("deterministic", "order-statistic", "student-t", "welch", "clopper-pearson", "bootstrap") + SIMULTANEOUS


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def _finite(values: Sequence[float], what: str, at_least: int = 1) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim == 0 or x.shape[-1] < at_least or not np.all(np.isfinite(x)):
        raise ValueError(f"{what} needs at least {at_least} finite values per unit axis, got shape {x.shape}")
    return x


def clopper_pearson(successes: int, trials: int, level: float = LEVEL) -> Interval:
    """Exact (Clopper–Pearson) interval of a binomial proportion: ``successes`` of ``trials``."""
    _check_level(level)
    k, n = int(successes), int(trials)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    alpha = 1.0 - level
    lower = 0.0 if k == 0 else float(_distributions().beta.ppf(alpha / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(_distributions().beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lower, upper


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of ``values`` (one value per unit; needs two or more).

    ``values`` may carry leading batch axes (units on the last axis): then arrays are returned."""
    _check_level(level)
    x = _finite(values, "a t interval", at_least=2)
    n = x.shape[-1]
    half = _distributions().t.ppf(0.5 + level / 2, n - 1) * x.std(axis=-1, ddof=1) / np.sqrt(n)
    mean = x.mean(axis=-1)
    if x.ndim == 1:
        return float(mean - half), float(mean + half)
    return mean - half, mean + half


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Welch interval of mean(a) − mean(b), two independent groups (each of two or more units)."""
    _check_level(level)
    x, y = _finite(a, "a Welch interval", 2), _finite(b, "a Welch interval", 2)
    va, vb = x.var(axis=-1, ddof=1) / x.shape[-1], y.var(axis=-1, ddof=1) / y.shape[-1]
    se = np.sqrt(va + vb)
    with np.errstate(divide="ignore", invalid="ignore"):   # both groups constant: se = 0, any df
        df = (va + vb) ** 2 / (va ** 2 / (x.shape[-1] - 1) + vb ** 2 / (y.shape[-1] - 1))
    df = np.where(np.isfinite(df), df, x.shape[-1] + y.shape[-1] - 2)
    half = _distributions().t.ppf(0.5 + level / 2, df) * se
    diff = x.mean(axis=-1) - y.mean(axis=-1)
    if x.ndim == 1:
        return float(diff - half), float(diff + half)
    return diff - half, diff + half


def order_statistic_ranks(n: int, q: float = 0.5, level: float = LEVEL) -> tuple[int, int] | None:
    """1-based ranks ``(i, j)`` with P(x_(i) ≤ θ_q ≤ x_(j)) ≥ ``level`` (equal tails), or ``None``
    when ``n`` units cannot reach the level (e.g. a median of fewer than 6 units at 95 %)."""
    _check_level(level)
    if not 0.0 < q < 1.0 or n < 1:
        raise ValueError(f"need 0 < q < 1 and n >= 1, got q={q!r}, n={n!r}")
    tail = (1.0 - level) / 2
    k = np.arange(n + 1)
    low_ok = _distributions().binom.cdf(k[:-1], n, q) <= tail          # P(Bin <= i-1) for i = 1..n
    high_ok = _distributions().binom.sf(k[:-1], n, q) <= tail          # P(Bin >= j) for j = 1..n
    if not low_ok.any() or not high_ok.any():
        return None
    return int(np.flatnonzero(low_ok)[-1]) + 1, int(np.flatnonzero(high_ok)[0]) + 1


def quantile_interval(values: Sequence[float], q: float = 0.5, level: float = LEVEL) -> Interval:
    """Exact distribution-free interval of the ``q``-quantile: two order statistics of ``values``.

    :data:`UNBOUNDED` when the units are too few for ``level``. Leading batch axes allowed."""
    x = np.sort(_finite(values, "a quantile interval"), axis=-1)
    ranks = order_statistic_ranks(x.shape[-1], q, level)
    if ranks is None:
        if x.ndim == 1:
            return UNBOUNDED
        return np.full(x.shape[:-1], -np.inf), np.full(x.shape[:-1], np.inf)
    lo, hi = x[..., ranks[0] - 1], x[..., ranks[1] - 1]
    return (float(lo), float(hi)) if x.ndim == 1 else (lo, hi)


def bootstrap(groups: Sequence[Sequence[float]], statistic: Callable[..., np.ndarray], *, seed: int,
              paired: bool, resamples: int = 4000, level: float = LEVEL) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` over units, vectorised.

    ``groups``: one array per group, units on the last axis (leading batch axes allowed).
    ``statistic(*resampled)`` gets arrays of shape ``(..., resamples, n)`` and reduces the last axis,
    e.g. ``lambda a, b: np.median(a, -1) / np.median(b, -1)``. ``paired``: the groups are measured
    on the same units and resampled jointly (equal lengths); otherwise each group on its own.
    Deterministic under ``seed`` (draw it from :mod:`curvnb.seeds`). Draws that are NaN (0/0) make
    the interval unbounded; infinite draws stay (an unbounded end)."""
    _check_level(level)
    arrays = [_finite(g, "a bootstrap") for g in groups]
    if paired and len({a.shape[-1] for a in arrays}) != 1:
        raise ValueError("paired groups need the same number of units")
    rng = np.random.default_rng(seed)
    resampled = []
    index = None
    for a in arrays:
        if index is None or not paired:
            index = rng.integers(0, a.shape[-1], size=a.shape[:-1] + (int(resamples), a.shape[-1]))
        resampled.append(np.take_along_axis(a[..., None, :], index, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.asarray(statistic(*resampled), dtype=float)
    # the outer order statistics at the tails (no interpolation: exact with infinite draws)
    lo = np.quantile(draws, (1 - level) / 2, axis=-1, method="lower")
    hi = np.quantile(draws, (1 + level) / 2, axis=-1, method="higher")
    undefined = np.isnan(draws).any(axis=-1)
    lo, hi = np.where(undefined, -np.inf, lo), np.where(undefined, np.inf, hi)
    return (float(lo), float(hi)) if np.ndim(lo) == 0 else (lo, hi)


def simultaneous_intervals(groups: Sequence[Sequence[float]], method: str,
                           level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``, one entry per group (first axis; leading batch axes of the groups after it):
    each group's median (``"simultaneous-order-statistic"``: exact order statistics) or proportion
    (``"simultaneous-clopper-pearson"``: 0/1 values, one group per row, no batch axes) at level
    1 − (1 − ``level``)/k for k groups, so that all k intervals contain their true values at once with
    probability ≥ ``level`` (Bonferroni: whatever the dependence between groups, e.g. paired units)."""
    _check_level(level)
    k = len(groups)
    each = 1.0 - (1.0 - level) / k
    if method == "simultaneous-order-statistic":
        ends = [quantile_interval(g, level=each) for g in groups]
    elif method == "simultaneous-clopper-pearson":
        arrays = [_finite(g, "a proportion") for g in groups]
        if any(a.ndim != 1 or not np.all((a == 0) | (a == 1)) for a in arrays):
            raise ValueError("simultaneous-clopper-pearson takes one row of 0/1 values per group")
        ends = [clopper_pearson(int(a.sum()), a.size, each) for a in arrays]
    else:
        raise ValueError(f"unknown simultaneous method {method!r}; known: {SIMULTANEOUS}")
    return np.stack([np.asarray(e[0], float) for e in ends]), np.stack([np.asarray(e[1], float) for e in ends])


def min_units(method: str, *, q: float = 0.5, level: float = LEVEL, threshold: float | None = None,
              direction: str | None = None, groups: int = 1) -> int:
    """Fewest units (per group) with which ``method`` can decide a claim at ``level``.

    ``order-statistic``: the smallest n whose ranks reach the level (6 for a median at 95 %);
    ``simultaneous-order-statistic``: the same for each of ``groups`` medians at the Bonferroni level;
    ``student-t``/``welch``: 2; ``bootstrap``: :data:`BOOTSTRAP_MIN_UNITS` (coverage checked by
    simulation from there on); ``clopper-pearson``: the smallest n whose all-success (claim
    ``greater``) or no-success (claim ``less``) interval excludes ``threshold``."""
    _check_level(level)
    if method == "deterministic":
        return 1
    if method in ("student-t", "welch"):
        return 2
    if method == "bootstrap":
        return BOOTSTRAP_MIN_UNITS
    if method in ("order-statistic", "simultaneous-order-statistic"):
        each = level if method == "order-statistic" else 1.0 - (1.0 - level) / groups
        n = 1
        while order_statistic_ranks(n, q, each) is None:
            n += 1
        return n
    if method == "simultaneous-clopper-pearson":
        return 1
    if method == "clopper-pearson":
        if threshold is None or not 0.0 < threshold < 1.0 or direction not in ("greater", "less"):
            raise ValueError("a proportion needs a threshold in (0, 1) and direction 'greater' or 'less'")
        p = threshold if direction == "greater" else 1.0 - threshold
        # all n units on the claimed side: the interval's near end is (alpha/2)^(1/n) from the far end
        return max(1, math.floor(math.log((1 - level) / 2) / math.log(p)) + 1)
    raise ValueError(f"unknown interval method {method!r}; known: {METHODS}")


def bootstrap_interval(values: Sequence[float] | Sequence[Sequence[float]],
                       statistic: Callable[..., float] = np.median, level: float = LEVEL,
                       resamples: int = 4000, seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of a scalar ``statistic`` over seeds (the studies' pre-engine
    helper; new claims use the engine, or :func:`bootstrap` for a vectorised statistic).

    ``values`` is one value per seed, or a tuple of equal-length arrays paired by seed; then the
    seeds are resampled jointly and ``statistic`` gets one resampled array per group."""
    _check_level(level)
    groups = values if isinstance(values, tuple) else (values,)
    arrays = [np.asarray(g, dtype=float).ravel() for g in groups]
    n = arrays[0].size
    if n < 1 or any(a.size != n for a in arrays):
        raise ValueError("bootstrap needs at least one seed and groups of equal length (paired by seed)")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(int(resamples), n))
    draws = np.array([statistic(*(a[i] for a in arrays)) for i in index], dtype=float)
    draws = draws[np.isfinite(draws)] if np.isfinite(draws).any() else draws
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """median(a) / median(b): the statistic of "run A's median over seeds is k× run B's" (inf or nan,
    without a warning, where median(b) is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.median(np.asarray(a, dtype=float)) / np.median(np.asarray(b, dtype=float)))


def seed_summary(values: Sequence[float], level: float = LEVEL) -> dict[str, float | int | list[float]]:
    """Mean, its t interval, median, min and max of one value per seed (plain data for reports)."""
    x = np.asarray(values, dtype=float).ravel()
    out: dict[str, float | int | list[float]] = {
        "seeds": int(x.size), "mean": float(x.mean()), "median": float(np.median(x)),
        "min": float(x.min()), "max": float(x.max())}
    if x.size >= 2 and np.all(np.isfinite(x)):
        out["interval"] = list(t_interval(x, level))
    return out
