"""The coverage simulation (curvnb.claims.coverage): its machinery on cases with a known answer, one
real coverage check at the engine's smallest bootstrap unit count, and the stored results of the
chapters' own composite statistics (current, and shown in the claims tables)."""

import numpy as np
import pytest

from curvnb.claims import ClaimSpec
from curvnb.claims import coverage

RATIO = ClaimSpec(id="ratio", statement="a ratio of paired medians below 1", statistic="ratio_of_medians_paired",
                  direction="less", threshold=1.0)


def test_a_population_without_spread_is_always_covered_with_zero_width():
    res = coverage.population_coverage(RATIO, [np.full(20, 2.0), np.full(20, 4.0)], n_units=8, repetitions=50,
                                       resamples=100)
    assert res["truth"] == 0.5 and res["coverage"] == 1.0 and res["median_width"] == 0.0
    assert res["repetitions"] == 50 and res["n_units"] == 8 and res["design"] == "paired" and res["groups"] == 2


def test_refuses_what_it_cannot_simulate():
    median = ClaimSpec(id="m", statement="a median above 0", statistic="median", direction="greater")
    with pytest.raises(ValueError, match="not one of"):
        coverage.population_coverage(median, [np.arange(10.0)])
    with pytest.raises(ValueError, match="fewer than its interval needs"):
        coverage.population_coverage(RATIO, [np.arange(1.0, 11.0), np.arange(1.0, 11.0)], n_units=5)
    with pytest.raises(ValueError, match="paired population"):
        coverage.population_coverage(RATIO, [np.arange(1.0, 11.0), np.arange(1.0, 12.0)])


def test_paired_ratio_of_medians_covers_at_eight_units():
    """The engine's smallest bootstrap unit count, 2,000 repetitions from a known (large) population:
    within the band the engine's bootstrap is held to."""
    rng = np.random.default_rng(11)
    a = rng.lognormal(0.0, 1.0, 20_000)
    b = 0.5 * a + rng.lognormal(0.0, 1.0, 20_000)
    res = coverage.population_coverage(RATIO, [a, b], n_units=8, repetitions=2000, resamples=500, seed=3)
    assert res["repetitions"] == 2000
    assert 0.93 <= res["coverage"] <= 0.975, res   # the band the engine's bootstrap is held to (test_stats)


def test_stored_chapter_coverage_is_current_and_reaches_the_tables():
    """``benchmarks/results/coverage.json`` (``python -m curvnb.claims.coverage``): every composite
    statistic the chapters declare was simulated at its quick-profile unit count, with the statistic
    and the profile that exist now; each chapter's record carries its simulated coverage, and the claims
    table says so where it falls below nominal."""
    import importlib

    from curvnb.claims import claims_table_html, evaluate

    results = coverage.stored()
    assert results["repetitions"] >= 2000 and results["floor"] == coverage.FLOOR
    stored = {(r["chapter"], r["id"]): r for r in results["claims"]}
    chapters = ("intro", "toolkit", "huh2020", "orvieto2021", "jastrzebski2020", "duersch2024", "buffelli2024",
                "atlas")
    for chapter in chapters:
        study = importlib.import_module(f"curvnb.studies.{chapter}")
        declared = {s.id: s for s in getattr(study, "SPECS", ()) if coverage.simulated(s)}
        assert set(declared) == {i for c, i in stored if c == chapter}, chapter
        for fid, spec in declared.items():
            r = stored[(chapter, fid)]
            assert r["spec_sha256"] == coverage.spec_sha256(spec), f"{chapter}/{fid}: statistic changed: re-simulate"
            assert r["profile_sha256"] == coverage.profile_sha256(chapter), f"{chapter}: profile changed: re-simulate"
            if r["coverage"] is None:
                assert r["n_units"] < spec.min_units()
                continue
            assert r["n_units"] >= spec.min_units() and r["repetitions"] >= 2000 and r["method"] == spec.interval_method
            assert r["accepted"] == coverage.acceptable(r["coverage"])
            found = coverage.simulated_coverage(chapter, spec, "quick", results)
            assert found == {"coverage": r["coverage"], "n_units": r["n_units"], "repetitions": r["repetitions"],
                             "accepted": r["accepted"]}
            assert coverage.simulated_coverage(chapter, spec, "full", results) is None   # other unit counts
    # the table shows it, and says so below nominal
    spec = RATIO
    a = np.arange(1.0, 9.0)
    low = evaluate(spec, a, 2 * a, seed=1)
    import dataclasses
    for value, words in ((0.915, "below nominal"), (0.969, "")):
        record = dataclasses.replace(low, simulated_coverage={"coverage": value, "n_units": 8, "repetitions": 4000,
                                                              "accepted": value >= coverage.FLOOR}).record("quick")
        table = claims_table_html([record])
        assert f"{value:.1%}" in table and ("below nominal" in table) == bool(words)
