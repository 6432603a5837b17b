"""Statistics over independent seeds: 95 % intervals for the claims' tested statistics.

A claim about a random quantity is judged over independent seeds, and its record carries an
interval of the tested statistic:

- :func:`bootstrap_interval` — percentile bootstrap over seeds, for any statistic (median, mean,
  a ratio of medians of paired runs, ...);
- :func:`clopper_pearson` — exact binomial interval, for counts ("holds in k of n seeds");
- :func:`t_interval` — Student-t interval of a mean (what the chapters report as "mean ± 95 %").
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats as _scipy_stats

Interval = tuple[float, float]


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> Interval:
    """Exact (Clopper–Pearson) interval of a binomial proportion: ``successes`` of ``trials``."""
    _check_level(level)
    k, n = int(successes), int(trials)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    alpha = 1.0 - level
    lower = 0.0 if k == 0 else float(_scipy_stats.beta.ppf(alpha / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(_scipy_stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lower, upper


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Student-t interval of the mean of ``values`` (one value per seed; needs two or more)."""
    _check_level(level)
    x = np.asarray(values, dtype=float).ravel()
    if x.size < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"a t interval needs at least two finite values, got {x.tolist()}")
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    mean = float(x.mean())
    return mean - half, mean + half


def bootstrap_interval(values: Sequence[float] | Sequence[Sequence[float]],
                       statistic: Callable[..., float] = np.median, level: float = 0.95,
                       resamples: int = 4000, seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` over seeds.

    ``values`` is one value per seed, or a tuple of equal-length arrays paired by seed (e.g. the
    S = 16 and S = 128 runs of the same seed); then the seeds are resampled jointly and
    ``statistic`` is called with one resampled array per group. Deterministic under ``seed``."""
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
    without a warning, where median(b) is 0; :func:`bootstrap_interval` drops such draws)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.median(np.asarray(a, dtype=float)) / np.median(np.asarray(b, dtype=float)))


def seed_summary(values: Sequence[float], level: float = 0.95) -> dict[str, float | int | list[float]]:
    """Mean, its t interval, median, min and max of one value per seed (plain data for reports)."""
    x = np.asarray(values, dtype=float).ravel()
    out: dict[str, float | int | list[float]] = {
        "seeds": int(x.size), "mean": float(x.mean()), "median": float(np.median(x)),
        "min": float(x.min()), "max": float(x.max())}
    if x.size >= 2 and np.all(np.isfinite(x)):
        out["interval"] = list(t_interval(x, level))
    return out
