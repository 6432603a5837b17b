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
