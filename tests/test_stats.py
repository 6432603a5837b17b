import math
import numpy as np
import pytest
from scipy import stats as scipy_stats

from curvnb.stats import bootstrap_interval, clopper_pearson, median_ratio, seed_summary, t_interval


def test_clopper_pearson_known_values():
    # Reference values of the exact binomial interval (Clopper & Pearson 1934 tables / R binom.test).
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3084971), abs=1e-6)
    assert clopper_pearson(10, 10) == pytest.approx((0.6915029, 1.0), abs=1e-6)
    assert clopper_pearson(5, 10) == pytest.approx((0.1870860, 0.8129140), abs=1e-6)
    # all n of n: the lower end is (alpha/2)^(1/n)
    assert clopper_pearson(16, 16)[0] == pytest.approx(0.025 ** (1 / 16), rel=1e-9)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError):
        clopper_pearson(1, 2, level=1.5)


def test_t_interval_matches_formula():
    x = [1.0, 2.0, 3.0, 4.0]
    lo, hi = t_interval(x)
    half = scipy_stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
    assert (lo, hi) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-12)
    assert (lo, hi) == pytest.approx((0.4457397, 4.5542603), abs=1e-6)
    with pytest.raises(ValueError):
        t_interval([1.0])


def test_bootstrap_interval_properties():
    assert bootstrap_interval([3.0] * 7) == (3.0, 3.0)
    x = np.random.default_rng(1).normal(size=400)
    lo, hi = bootstrap_interval(x, np.mean)
    tlo, thi = t_interval(x)
    assert lo == pytest.approx(tlo, abs=0.03) and hi == pytest.approx(thi, abs=0.03)
    assert bootstrap_interval(x, np.mean) == (lo, hi)            # deterministic under its seed
    assert min(x) <= lo < np.median(x) < hi <= max(x) or lo < np.mean(x) < hi
    # paired groups: seeds resampled jointly, so a constant ratio has a degenerate interval
    a = np.arange(1.0, 9.0)
    assert bootstrap_interval((a, 2 * a), lambda u, v: np.median(v) / np.median(u)) == pytest.approx((2.0, 2.0))
    with pytest.raises(ValueError):
        bootstrap_interval((a, a[:3]))


def test_seed_summary():
    s = seed_summary([1.0, 2.0, 3.0, 4.0])
    assert s["seeds"] == 4 and s["mean"] == 2.5 and s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["interval"] == pytest.approx(list(t_interval([1.0, 2.0, 3.0, 4.0])))
    assert "interval" not in seed_summary([1.0])


def test_median_ratio():
    assert median_ratio([1.0, 2.0, 9.0], [4.0, 4.0, 1.0]) == 0.5
    assert median_ratio([1.0], [0.0]) == np.inf and np.isnan(median_ratio([0.0], [0.0]))  # no warning raised
    lo, hi = bootstrap_interval(([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]), median_ratio)
    assert 1.0 <= lo <= 2.0 <= hi <= 3.0


# --- the engine's interval methods: exact values and coverage by simulation ------------------------

from curvnb.stats import (BOOTSTRAP_MIN_UNITS, bootstrap, min_units, order_statistic_ranks,  # noqa: E402
                          quantile_interval, welch_interval)

REPS = 2000   # repetitions per coverage check (vectorised: each check runs in well under a second)


def test_order_statistic_ranks_exact():
    assert order_statistic_ranks(5) is None                     # 1 - 2/32 = 93.75 % < 95 %
    assert order_statistic_ranks(6) == (1, 6)                   # 1 - 2/64 = 96.9 %
    assert order_statistic_ranks(10) == (2, 9)                  # P(2 <= Bin(10, 1/2) <= 8) = 97.9 %
    assert order_statistic_ranks(20) == (6, 15)
    assert quantile_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (-np.inf, np.inf)
    assert quantile_interval([6.0, 1.0, 2.0, 5.0, 4.0, 3.0]) == (1.0, 6.0)
    assert min_units("order-statistic") == 6 and min_units("order-statistic", q=0.9) == 36
    with pytest.raises(ValueError):
        quantile_interval([1.0, np.nan, 2.0])


def test_min_units_per_method():
    assert min_units("student-t") == 2 and min_units("welch") == 2 and min_units("deterministic") == 1
    assert min_units("bootstrap") == BOOTSTRAP_MIN_UNITS
    # proportion > 0.5: all n successes must put the lower end above 0.5: 0.025^(1/n) > 0.5 from n = 6
    assert min_units("clopper-pearson", threshold=0.5, direction="greater") == 6
    n = min_units("clopper-pearson", threshold=0.8, direction="greater")
    assert clopper_pearson(n, n)[0] > 0.8 >= clopper_pearson(n - 1, n - 1)[0]
    n = min_units("clopper-pearson", threshold=0.1, direction="less")
    assert clopper_pearson(0, n)[1] < 0.1 <= clopper_pearson(0, n - 1)[1]
    with pytest.raises(ValueError, match="unknown"):
        min_units("percentile-of-vibes")


def test_welch_interval_matches_scipy():
    a, b = [1.0, 2.0, 4.0, 7.0], [0.5, 0.7, 0.6]
    res = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert welch_interval(a, b) == pytest.approx((res.low, res.high), rel=1e-9)


def _rate(lo, hi, truth) -> float:
    return float(np.mean((lo <= truth) & (truth <= hi)))


DISTRIBUTIONS = {  # name: (sampler, true median, true mean)
    "normal": (lambda r, s: r.normal(3.0, 2.0, s), 3.0, 3.0),
    "lognormal": (lambda r, s: r.lognormal(0.0, 1.0, s), 1.0, math.exp(0.5)),
    "exponential": (lambda r, s: r.exponential(2.0, s), 2.0 * math.log(2.0), 2.0),
}


@pytest.mark.parametrize("name", DISTRIBUTIONS)
@pytest.mark.parametrize("n", [6, 8, 15])
def test_quantile_interval_coverage_exact(name, n):
    """Exact method: coverage at least nominal - 2 points (it is conservative by construction)."""
    sample, median, _ = DISTRIBUTIONS[name]
    lo, hi = quantile_interval(sample(np.random.default_rng(n), (REPS, n)))
    assert _rate(lo, hi, median) >= 0.93


@pytest.mark.parametrize("n", [4, 10, 30])
def test_t_interval_coverage_normal(n):
    """Approximate in general, exact for normal data: within ±2 points of nominal."""
    sample, _, mean = DISTRIBUTIONS["normal"]
    lo, hi = t_interval(sample(np.random.default_rng(n), (REPS, n)))
    assert abs(_rate(lo, hi, mean) - 0.95) <= 0.02


@pytest.mark.parametrize("n", [5, 12])
def test_welch_interval_coverage(n):
    rng = np.random.default_rng(100 + n)
    a, b = rng.normal(1.0, 1.0, (REPS, n)), rng.normal(0.0, 3.0, (REPS, n + 3))
    lo, hi = welch_interval(a, b)
    assert abs(_rate(lo, hi, 1.0) - 0.95) <= 0.02


@pytest.mark.parametrize("n,p", [(10, 0.5), (20, 0.1), (40, 0.7)])
def test_clopper_pearson_coverage(n, p):
    k = np.random.default_rng(n).binomial(n, p, REPS)
    ends = np.array([clopper_pearson(int(s), n) for s in range(n + 1)])   # one interval per count
    assert _rate(ends[k, 0], ends[k, 1], p) >= 0.93


def _bootstrap_rate(a, b, truth, statistic, paired):
    rates = []
    for chunk in range(0, REPS, 250):   # chunks keep the (reps, resamples, n) arrays small
        lo, hi = bootstrap((a[chunk:chunk + 250], b[chunk:chunk + 250]), statistic, seed=chunk,
                           paired=paired, resamples=1000)
        rates.append(_rate(lo, hi, truth))
    return float(np.mean(rates))


def _ratio(a, b):
    return np.median(a, -1) / np.median(b, -1)


def _difference(a, b):
    return np.median(a, -1) - np.median(b, -1)


@pytest.mark.parametrize("n", [BOOTSTRAP_MIN_UNITS, 16])
@pytest.mark.parametrize("name,statistic,paired", [("lognormal", _ratio, False), ("exponential", _difference, False),
                                                   ("exponential", _ratio, True)])
def test_bootstrap_of_two_medians_coverage(n, name, statistic, paired):
    """The composite statistics the engine bootstraps, at the unit counts it allows. The percentile
    bootstrap of a median is slightly conservative (the median's discreteness): measured 94-97.5 %,
    so the band is nominal - 2 to nominal + 2.5 points."""
    sample, median, _ = DISTRIBUTIONS[name]
    rng = np.random.default_rng(7 * n)
    a = sample(rng, (REPS, n))
    b = 0.5 * a + sample(rng, (REPS, n)) if paired else 2.0 * sample(rng, (REPS, n))
    if paired:   # paired: the true value by a large simulation of the same design
        big = sample(np.random.default_rng(1), (2, 2_000_000))
        truth = np.median(big[0]) / np.median(0.5 * big[0] + big[1])
    else:
        truth = median / (2 * median) if statistic is _ratio else -median
    assert 0.93 <= _bootstrap_rate(a, b, truth, statistic, paired) <= 0.975


def test_bootstrap_deterministic_and_unbounded():
    a, b = np.arange(1.0, 9.0), np.arange(2.0, 10.0)
    first = bootstrap((a, b), _ratio, seed=3, paired=True)
    assert first == bootstrap((a, b), _ratio, seed=3, paired=True) and first[0] < first[1]
    assert bootstrap((a, 2 * a), _ratio, seed=3, paired=True) == pytest.approx((0.5, 0.5))
    assert bootstrap((a, np.zeros(8)), _ratio, seed=3, paired=False) == (np.inf, np.inf)
    assert bootstrap((np.zeros(8), np.zeros(8)), _ratio, seed=3, paired=False) == (-np.inf, np.inf)
    with pytest.raises(ValueError, match="same number"):
        bootstrap((a, a[:3]), _ratio, seed=0, paired=True)


# --- simultaneous exact intervals (a statistic's range over the box of several groups' intervals) ------

from curvnb.stats import simultaneous_intervals  # noqa: E402


def test_simultaneous_intervals_are_bonferroni_exact_intervals():
    groups = [np.arange(1.0, 21.0), np.arange(21.0, 41.0), np.arange(41.0, 61.0)]
    lower, upper = simultaneous_intervals(groups, "simultaneous-order-statistic")
    each = [quantile_interval(g, level=1 - 0.05 / 3) for g in groups]
    assert lower.tolist() == [e[0] for e in each] and upper.tolist() == [e[1] for e in each]
    assert (upper - lower > np.array([quantile_interval(g)[1] - quantile_interval(g)[0] for g in groups])).all()
    assert min_units("simultaneous-order-statistic", groups=3) == 7      # 1 - 2/2^7 >= 1 - 0.05/3 > 1 - 2/2^6
    assert min_units("simultaneous-order-statistic", groups=1) == min_units("order-statistic") == 6
    lower, upper = simultaneous_intervals([np.r_[np.ones(3), np.zeros(7)], np.ones(10)], "simultaneous-clopper-pearson")
    assert (lower[0], upper[0]) == pytest.approx(clopper_pearson(3, 10, 0.975)) and upper[1] == 1.0
    with pytest.raises(ValueError, match="0/1"):
        simultaneous_intervals([np.array([0.5, 1.0])], "simultaneous-clopper-pearson")
    with pytest.raises(ValueError, match="unknown"):
        simultaneous_intervals(groups, "simultaneous-vibes")


@pytest.mark.parametrize("n", [7, 20])
def test_span_over_simultaneous_intervals_covers(n):
    """The range of a span of three medians over their simultaneous intervals: exact and conservative,
    at least nominal − 2 points, also where the bootstrap fails (three near-equal medians)."""
    sample, median, _ = DISTRIBUTIONS["lognormal"]
    rng = np.random.default_rng(40 + n)
    shifts = np.array([0.0, 0.05, 0.1])
    groups = [sample(rng, (REPS, n)) + s for s in shifts]
    lower, upper = simultaneous_intervals(groups, "simultaneous-order-statistic")
    lo, hi = np.maximum(0.0, lower.max(0) - upper.min(0)), upper.max(0) - lower.min(0)
    assert _rate(lo, hi, 0.1) >= 0.93
