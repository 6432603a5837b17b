"""Pooled verdicts over chapter seeds (issue 26) on synthetic records: the pooled decision is the
engine's on the concatenated units, non-exchangeable units are refused, shared units are found."""
import numpy as np
import pytest

from curvnb.claims import ClaimSpec, evaluate
from curvnb.claims.engine import function_sha256
from curvnb.claims.pooling import (LEFT_OUT, STREAMS, Run, exchangeable, pool_claim, pool_runs, shared_unit_values,
                                   value_groups, why_not_pooled)

MEDIAN = ClaimSpec(id="m", statement="the median exceeds 1", statistic="median", direction="greater", threshold=1.0)
PAIRED = ClaimSpec(id="p", statement="a beats b", statistic="difference_of_medians_paired", direction="greater",
                   threshold=0.0, unit="network")
EXACT = ClaimSpec(id="e", statement="identity", statistic="value", direction="exact", threshold=0.0, delta=1e-9)
META = {"profile": "quick", "config": {"n": 4}, "sources_sha256": "abc"}


def _run(seed: int, x, a, b, meta=META) -> Run:
    records = [evaluate(MEDIAN, x).record("quick"), evaluate(PAIRED, a, b, seed=1).record("quick"),
               evaluate(EXACT, 0.0).record("quick")]
    return Run(seed, dict(meta), records)


def _runs(meta=META):
    rng = np.random.default_rng(0)   # fixed synthetic values: the test asserts arithmetic, not luck
    return [_run(s, 1.2 + rng.normal(size=4), rng.normal(size=9) + 0.1, rng.normal(size=9), meta) for s in (1, 2, 3)]


def test_pooled_decision_is_the_engines_on_the_concatenated_units():
    runs = _runs()
    for spec in (MEDIAN, PAIRED):
        pooled = pool_claim(runs, spec.id)
        recs = [r.record(spec.id) for r in runs]
        keys = ["x"] if spec is MEDIAN else ["a", "b"]
        data = [np.concatenate([rec["values"][k] for rec in recs]) for k in keys]
        want = evaluate(spec, *data, seed=STREAMS.seed(0, "bootstrap", 0)).record("quick")
        assert pooled["interval"] == want["interval"] and pooled["verdict"] == want["verdict"]
        assert pooled["n_units"] == sum(rec["n_units"] for rec in recs) == len(data[0])
        assert pooled["pooled"]["chapter_seeds"] == [1, 2, 3]
        assert pooled["pooled"]["units_per_seed"] == [rec["n_units"] for rec in recs]
        steps = pooled["pooled"]["narrowing"]
        assert [s["chapter_seeds"] for s in steps] == [1, 2, 3]
        assert steps[-1]["interval"] == pooled["interval"] and steps[-1]["verdict"] == pooled["verdict"]
    # four units of one seed are too few for a median's interval; twelve decide it
    assert pool_claim(runs, "m")["pooled"]["narrowing"][0]["verdict"] == "inconclusive"
    assert pool_claim(runs, "m")["pooled"]["narrowing"][-1]["interval"] is not None


def test_units_that_are_not_exchangeable_are_refused():
    runs = _runs()
    other = Run(0, {**META, "config": {"n": 5}}, runs[0].records)   # e.g. the book's run, older code
    pooled = pool_claim(runs + [other], "m")   # pooled without it, and it is named
    assert pooled == {**pool_claim(runs, "m"), "pooled": {**pool_claim(runs, "m")["pooled"], "left_out": [[0, LEFT_OUT]]}}
    assert exchangeable(runs + [other]) == (runs, [other])
    lone = [Run(s, {**META, "units_sha256": str(s)}, runs[0].records) for s in (1, 2)]
    assert "fewer than two chapter seeds" in why_not_pooled(lone, "m")
    # a report-code edit (prose, figures) leaves the units code alone: still exchangeable
    same_units = [Run(r.seed, {**META, "sources_sha256": str(r.seed), "units_sha256": "u"}, r.records) for r in runs]
    assert pool_claim(same_units, "m")["interval"] == pool_claim(runs, "m")["interval"]
    with pytest.raises(ValueError, match="deterministic"):
        pool_claim(runs, "e")
    changed = ClaimSpec(id="m", statement="the median exceeds 1", statistic="median", direction="greater", threshold=2.0)
    moved = Run(5, dict(META), [evaluate(changed, [1.0] * 6).record("quick")])
    assert "specs differ" in why_not_pooled(runs + [moved], "m")
    custom = ClaimSpec(id="m", statement="s", statistic="custom", design="one-sample", function=lambda x: np.median(x, axis=-1),
                       direction="greater", threshold=0.0)
    assert "custom" in why_not_pooled([Run(s, dict(META), [evaluate(custom, [1.0] * 8, seed=0).record("quick")])
                                       for s in (1, 2)], "m")
    summary = pool_runs(runs)
    assert set(summary) == {"m", "p", "e"} and "record" in summary["m"] and "reason" in summary["e"]


def test_shared_unit_values_are_found_and_constants_are_not():
    runs = _runs()
    assert shared_unit_values(runs) == []
    x = runs[0].record("m")["values"]["x"]
    copy = Run(9, dict(META), [evaluate(MEDIAN, [x[0], 5.0, 6.0, 7.0]).record("quick")])
    found = shared_unit_values(runs + [copy])
    assert found == [{"claim": "m", "seeds": (1, 9), "values": [(x[0],)]}]
    constant = [Run(s, dict(META), [evaluate(MEDIAN, [2.0] * 6).record("quick")]) for s in (1, 2)]
    assert shared_unit_values(constant) == []
    # discrete measurements repeat by nature: integer counts, values tied within a seed
    counts = [Run(s, dict(META), [evaluate(MEDIAN, v).record("quick")]) for s, v in ((1, [5.0, 6, 7]), (2, [6.0, 8, 9]))]
    assert shared_unit_values(counts) == []
    tied = [Run(s, dict(META), [evaluate(MEDIAN, v).record("quick")]) for s, v in ((1, [0.5, 0.5, 0.25]), (2, [0.25, 0.75, 1.5]))]
    assert shared_unit_values(tied) == []
    # Spearman correlations of 12 untied points are multiples of 6/(12·143): two seeds can meet on one
    spearman = [1 - 6 * d / (12 * 143) for d in (20, 52, 104, 208, 26, 60)]
    ranks = [Run(s, dict(META), [evaluate(MEDIAN, v).record("quick")]) for s, v in
             ((1, spearman[:3]), (2, spearman[2:5]))]
    assert shared_unit_values(ranks) == []
    # ... while one continuous value among them keeps the check on (and finds the shared unit)
    mixed = [Run(1, dict(META), [evaluate(MEDIAN, spearman[:3]).record("quick")]),
             Run(2, dict(META), [evaluate(MEDIAN, [spearman[2], 0.1234567891, 0.3]).record("quick")])]
    assert shared_unit_values(mixed) == [{"claim": "m", "seeds": (1, 2), "values": [(spearman[2],)]}]
    # a paired unit is its pair: one equal coordinate is no shared unit, an equal pair is
    a, b = runs[0].record("p")["values"]["a"], runs[0].record("p")["values"]["b"]
    half = Run(7, dict(META), [evaluate(PAIRED, [a[0], 0.123], [0.456, b[1]], seed=1).record("quick")])
    whole = Run(8, dict(META), [evaluate(PAIRED, [a[0], 0.123], [b[0], 0.789], seed=1).record("quick")])
    assert shared_unit_values([runs[0], half]) == []
    assert shared_unit_values([runs[0], whole]) == [{"claim": "p", "seeds": (1, 8), "values": [(a[0], b[0])]}]


def test_a_custom_statistic_pools_with_the_studys_declared_function_while_its_code_is_unchanged():
    """A custom statistic's function is code, not record: the study's declared spec re-decides the
    pooled units when its function's source is the one the records name, and is refused otherwise."""
    from curvnb.studies import orvieto2021 as study

    spec = next(s for s in study.SPECS if s.id == "relu-collapse-drop")
    rng = np.random.default_rng(1)   # fixed synthetic log-gradients of six groups: arithmetic, not luck
    data = [[rng.normal(-g / 3, 1.0, size=5) for g in range(6)] for _ in range(3)]
    meta = {**META, "chapter": "orvieto2021"}
    runs = [Run(s, meta, [evaluate(spec, *groups, seed=s).record("quick")]) for s, groups in enumerate(data, 1)]
    pooled = pool_claim(runs, spec.id)
    values = [r.record(spec.id)["values"] for r in runs]
    keys = value_groups(values[0])
    want = evaluate(spec, *(np.concatenate([np.asarray(v[k]) for v in values]) for k in keys),
                    seed=STREAMS.seed(0, "bootstrap", 0)).record("quick")
    assert len(keys) == 6 and pooled["interval"] == want["interval"] and pooled["n_units"] == want["n_units"] == 15
    # groups keep the statistic's order past ten (g10 after g9, not after g1): gradient-slope has fifteen
    assert value_groups({f"g{i}": [] for i in (10, 2, 0, 11, 1)} | {"design": "paired"}) == ["g0", "g1", "g2", "g10", "g11"]
    assert all(r.record(spec.id)["function_sha256"] == function_sha256(spec.function) for r in runs)
    old = [Run(r.seed, meta, [{**r.record(spec.id), "function_sha256": "another function"}]) for r in runs]
    assert "not the study's declared one" in why_not_pooled(old, spec.id)
