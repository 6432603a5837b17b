"""The verdict engine on synthetic cases with known answers, its records and its report layer."""
import json
import math

import numpy as np
import pytest

from curvnb.claims import (COLOURS, SMOKE_NOTE, Claim, ClaimSpec, by_verdict, claims_table_html, decide, evaluate,
                           format_estimate, read_claims_file, scorecard_markdown, verdict, what_we_found,
                           write_claims)


def spec(statistic="median", direction="greater", threshold=1.0, **kw):
    return ClaimSpec(id=kw.pop("id", "c"), statement="s", statistic=statistic, direction=direction,
                     threshold=threshold, **kw)


@pytest.mark.parametrize("direction,delta,interval,expected", [
    ("greater", None, (1.1, 2.0), "reproduced"), ("greater", None, (0.2, 0.9), "not reproduced"),
    ("greater", None, (0.9, 1.1), "inconclusive"), ("greater", None, (1.0, 2.0), "inconclusive"),
    ("less", None, (0.2, 0.9), "reproduced"), ("less", None, (1.1, 2.0), "not reproduced"),
    ("less", None, (0.9, 1.1), "inconclusive"),
    ("two-sided", 0.5, (1.6, 2.0), "reproduced"), ("two-sided", 0.5, (-3.0, 0.4), "reproduced"),
    ("two-sided", 0.5, (0.6, 1.4), "not reproduced"), ("two-sided", 0.5, (1.2, 1.8), "inconclusive"),
    ("agreement", 0.5, (0.6, 1.4), "reproduced"), ("agreement", 0.5, (1.6, 2.0), "not reproduced"),
    ("agreement", 0.5, (0.0, 1.2), "inconclusive"),
])
def test_decide_one_rule(direction, delta, interval, expected):
    assert decide(direction, 1.0, delta, *interval) == expected


def test_median_above_below_straddling_and_too_few():
    up = evaluate(spec(), [1.5, 1.7, 2.0, 2.2, 1.9, 1.6, 2.5, 1.8])
    assert up.verdict == "reproduced" and up.passed and up.interval == (1.5, 2.5) and up.n_units == 8
    assert up.side == "claimed" and up.units_to_decide is None
    down = evaluate(spec(), [0.5, 0.7, 0.2, 0.9, 0.4, 0.6])
    assert down.verdict == "not reproduced" and down.interval == (0.2, 0.9) and down.side == "other"
    mixed = evaluate(spec(), [0.8, 1.3, 1.2, 0.9, 1.4, 1.25, 1.35, 1.1])
    assert mixed.verdict == "inconclusive" and mixed.side == "claimed"
    lo, hi = mixed.interval
    gap = mixed.estimate - 1.0   # n' = n (h / g)^2 at the observed spread
    assert mixed.units_to_decide == math.ceil(8 * ((hi - lo) / 2 / gap) ** 2)
    few = evaluate(spec(), [5.0, 6.0, 7.0, 8.0, 9.0])          # all far above, but 5 units
    assert few.verdict == "inconclusive" and few.interval is None and "at least 6" in few.reason
    assert few.units_to_decide == 6 and few.record("quick")["interval"] is None


def test_paired_and_two_group_statistics():
    a = np.array([2.0, 2.1, 1.9, 2.4, 2.2, 2.05, 1.95, 2.3])
    r = evaluate(spec("median_of_ratios"), a, np.ones(8))
    assert r.verdict == "reproduced" and r.estimate == pytest.approx(np.median(a))
    assert r.record("q")["values"] == {"design": "paired", "a": a.tolist(), "b": [1.0] * 8}
    d = evaluate(spec("mean_of_differences", "two-sided", 0.0, delta=0.5), a, a - 1.0 + 0.01 * np.arange(8))
    assert d.verdict == "reproduced" and d.direction_found == "greater"
    none = evaluate(spec("mean_of_differences", "two-sided", 0.0, delta=0.5), a, a + 0.01 * np.sin(np.arange(8)))
    assert none.verdict == "not reproduced"
    agree = evaluate(spec("mean_of_differences", "agreement", 0.0, delta=0.5), a, a + 0.01 * np.sin(np.arange(8)))
    assert agree.verdict == "reproduced"
    w = evaluate(spec("difference_of_means", "less", 0.0), [1.0, 1.2, 0.9, 1.1], [3.0, 3.3, 2.8])
    assert w.verdict == "reproduced" and w.interval[1] < 0


def test_bootstrap_statistic_needs_its_seed_and_is_deterministic():
    s = spec("ratio_of_medians", "less", 1.0)
    a, b = np.linspace(1.0, 2.0, 10), np.linspace(4.0, 6.0, 10)
    with pytest.raises(ValueError, match="seed"):
        evaluate(s, a, b)
    first = evaluate(s, a, b, seed=11)
    assert first.verdict == "reproduced" and first.interval == evaluate(s, a, b, seed=11).interval
    assert first.estimate == pytest.approx(1.5 / 5.0)
    few = evaluate(s, a[:7], b[:7], seed=11)       # 7 < 8 units per group: inconclusive by construction
    assert few.verdict == "inconclusive" and few.interval is None


def test_proportion_clopper_pearson():
    s = spec("proportion", "greater", 0.5)
    assert s.min_units() == 6
    assert evaluate(s, [True] * 10).verdict == "reproduced"
    assert evaluate(s, [1, 0] * 5).verdict == "inconclusive"
    assert evaluate(s, [True] * 5).verdict == "inconclusive"          # below min_units
    assert evaluate(s, [False] * 10).verdict == "not reproduced"
    with pytest.raises(ValueError, match="0/1"):
        evaluate(s, [0.5, 1.0])


def test_deterministic_claims():
    tol = spec("value", "less", 1e-9, kind="check")
    assert evaluate(tol, 2e-15).verdict == "reproduced" and evaluate(tol, 1e-3).verdict == "not reproduced"
    assert evaluate(tol, 1e-9).verdict == "not reproduced"            # on the threshold: not below it
    assert evaluate(tol, float("nan")).verdict == "not reproduced"
    exact = spec("value", "exact", 2.0, delta=1e-6)
    assert evaluate(exact, 2.0 + 1e-9).verdict == "reproduced" and evaluate(exact, 2.1).verdict == "not reproduced"
    rec = evaluate(tol, 2e-15).record("quick")
    assert rec["interval"] is None and rec["n_units"] == 1 and format_estimate(rec) == "< 1e-9"


def test_spec_validation():
    with pytest.raises(ValueError, match="delta"):
        spec("median", "two-sided")
    with pytest.raises(ValueError, match="takes no delta"):
        spec("median", "greater", delta=0.1)
    with pytest.raises(ValueError, match="unknown statistic"):
        spec("mode")
    with pytest.raises(ValueError, match="deterministic"):
        spec("median", "exact", delta=0.1)
    with pytest.raises(ValueError, match="kind"):
        spec(kind="opinion")
    with pytest.raises(ValueError, match="takes 2 group"):
        evaluate(spec("median_of_ratios"), [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        evaluate(spec(), [1.0, float("inf")])
    with pytest.raises(ValueError, match="one number"):
        evaluate(spec("value"), [1.0, 2.0])


def test_records_format_3_with_legacy(tmp_path):
    results = [evaluate(spec(id="m", unit="network", physical_unit="nats", quantity="median gap"),
                        np.linspace(1.5, 2.5, 8)),
               evaluate(spec(id="open"), np.linspace(0.6, 1.6, 8)),
               Claim("old", "legacy claim", {"a": 1.0}, "> 0", True, kind="check")]
    records = write_claims(tmp_path / "x.json", results, "quick")
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["format"] == 3 and data["claims"] == records
    run, back = read_claims_file(tmp_path / "x.json")
    m, o, old = back
    assert m["verdict"] == "reproduced" and m["passed"] is True and m["rule"] == "engine"
    assert m["unit"] == "network" and m["physical_unit"] == "nats" and m["n_units"] == m["seeds"] == 8
    assert m["statistic"] == "median" and m["method"] == "order-statistic" and len(m["values"]["x"]) == 8
    assert o["verdict"] == "inconclusive" and o["passed"] is False and o["units_to_decide"] is not None
    assert old["rule"] == "legacy" and old["verdict"] == "reproduced"
    bad = dict(data, claims=[dict(records[1], passed=True)])       # verdict and passed disagree
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="verdict"):
        read_claims_file(tmp_path / "bad.json")


def test_report_layer(tmp_path):
    kinds = {"paper": None, "check": None, "finding": None}
    values = {"reproduced": np.linspace(1.5, 2.5, 8), "not reproduced": np.linspace(0.1, 0.5, 8),
              "inconclusive": np.linspace(0.6, 1.6, 8)}
    results = [evaluate(spec(id=f"{k}-{v}", kind=k, changed="rule-x" if k == "check" else ""), x)
               for k in kinds for v, x in values.items()]
    records = write_claims(tmp_path / "ch.json", results, "quick")
    words = [verdict(r) for r in records]
    assert words == ["reproduced", "not reproduced", "inconclusive", "holds", "fails", "inconclusive",
                     "yes", "no", "inconclusive"]
    table = claims_table_html(records)
    assert all(c in table for c in COLOURS.values()) and "dashed" in table      # three distinct badges
    assert "<details>" in table and "{'" not in table and "[1.5, 1.64" not in table  # no raw lists
    assert "exact order statistics" in table and "would decide it" in table
    assert table.count('href="changes.html#rule-x"') == 3
    assert not any(ord(ch) > 0x2FFF for ch in table)                              # no emoji
    text = what_we_found(records)
    assert text.startswith("1 of 3 paper claims reproduced, 1 not reproduced, 1 inconclusive; "
                           "1 of 3 self-checks hold, 1 fails, 1 inconclusive; "
                           "findings: 1 of 3 yes, 1 no, 1 inconclusive.")
    assert "**paper-inconclusive** (inconclusive)" in text
    assert by_verdict(records[2], "a", "b", "c") == "c"
    md = scorecard_markdown(tmp_path, {"ch": "Chapter"})
    assert "**1 of 3 paper claims reproduced**, 1 not reproduced, 1 inconclusive" in md
    assert md.count("curvnb-verdict") == len(records)
    write_claims(tmp_path / "ch.json", results[:1], "smoke")
    smoke = scorecard_markdown(tmp_path)
    assert SMOKE_NOTE in claims_table_html(read_claims_file(tmp_path / "ch.json")[1]) and SMOKE_NOTE in smoke


def test_custom_statistic_is_bootstrapped():
    iqr = lambda x: np.subtract(*np.quantile(x, [0.75, 0.25], axis=-1))  # noqa: E731
    s = spec("custom", "greater", 0.5, function=iqr, design="one-sample")
    assert s.min_units() == 8 and s.interval_method == "bootstrap"
    x = np.linspace(0.0, 4.0, 12)
    r = evaluate(s, x, seed=5)
    assert r.estimate == pytest.approx(2.0) and r.verdict == "reproduced"
    assert r.interval == evaluate(s, x, seed=5).interval
    with pytest.raises(ValueError, match="function"):
        spec("custom", "greater", 0.5)
    assert what_we_found([]) == ""


def test_a_record_re_decides_on_its_own_units():
    """What pooling (issue 26) needs: spec and units from the record give the same result."""
    s = spec("median_of_ratios", "less", 1.0, unit="network", quantity="q", source="Fig. 1", labels=("GN", "Adam"))
    a, b = np.linspace(0.5, 1.2, 9), np.ones(9)
    rec = evaluate(s, a, b).record("quick")
    again = evaluate(ClaimSpec.from_record(rec), rec["values"]["a"], rec["values"]["b"]).record("quick")
    assert again == rec and ClaimSpec.from_record(rec) == s
    with pytest.raises(ValueError, match="engine records"):
        ClaimSpec.from_record(Claim("x", "s", 1.0, "> 0", True).record("quick"))


def test_band_claims_say_where_the_estimate_lies():
    s = spec("mean_of_differences", "two-sided", 0.0, delta=0.5, labels=("with", "without"))
    a = np.array([90.1, 89.5, 90.3, 91.0, 90.2, 89.9])
    rec = evaluate(s, a, np.array([90.0, 90.1, 89.8, 90.5, 90.6, 89.7])).record("quick")
    assert rec["verdict"] == "inconclusive" and rec["side"] == "other"
    assert "inside 0 ± 0.5, the interval crosses its edge" in claims_table_html([rec])
    assert "with: 90.1, 89.5" in claims_table_html([rec])


def test_simultaneous_interval_of_a_custom_statistic():
    """A custom statistic of three medians decided by its range over their simultaneous exact intervals."""
    import numpy as np

    from curvnb.claims import ClaimSpec, evaluate
    from curvnb.stats import simultaneous_intervals

    def span(*g):
        m = np.stack([np.median(x, axis=-1) for x in g])
        return m.max(0) - m.min(0)

    def span_bounds(lower, upper):
        return max(0.0, lower.max() - upper.min()), upper.max() - lower.min()

    spec = ClaimSpec(id="span", statement="three medians agree", statistic="custom", direction="less", threshold=5.0,
                     function=span, design="paired", method="simultaneous-order-statistic", bounds=span_bounds, groups=3)
    groups = [np.arange(20.0), np.arange(20.0) + 1, np.arange(20.0) + 2]
    res = evaluate(spec, *groups)
    lower, upper = simultaneous_intervals(groups, spec.method)
    assert res.estimate == 2.0 and res.interval == span_bounds(lower, upper)
    assert res.interval[0] == 0.0 and res.verdict == "inconclusive"   # 0 ≤ span ≤ upper end, which exceeds 5
    assert evaluate(spec, *(g[:6] for g in groups)).reason.startswith("6 seeds are too few")   # 7 needed
    record = res.record("quick")
    assert record["method"] == "simultaneous-order-statistic" and "bounds_sha256" in record
    for bad in (dict(bounds=None), dict(groups=None), dict(statistic="median", function=None, design=None)):
        with pytest.raises(ValueError, match="simultaneous|bounds|method"):
            ClaimSpec(**{**spec.__dict__, **bad})
    with pytest.raises(ValueError, match="bounds= is for"):
        ClaimSpec(**{**spec.__dict__, "method": None})
