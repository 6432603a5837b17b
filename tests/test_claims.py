import json
import math

import numpy as np
import pytest

from curvnb.claims import (CLAIM_KEYS, Claim, claims_table_html, format_value, read_claims, scorecard_markdown,
                           write_claims)


def test_claim_record_format(tmp_path):
    claims = [Claim("a", "x holds", np.float64(0.5), "< 1", np.bool_(True)),
              Claim("b", "y holds", float("nan"), "finite", False),
              Claim("c", "z", np.array([1.0, 2.0]), "-", True)]
    records = write_claims(tmp_path / "ch.json", claims, "quick")
    on_disk = json.loads((tmp_path / "ch.json").read_text())["claims"]
    assert on_disk == records
    assert [tuple(r)[:6] for r in on_disk] == [CLAIM_KEYS] * 3
    assert on_disk[0]["measured"] == 0.5 and on_disk[0]["passed"] is True
    assert on_disk[1]["measured"] == "nan" and on_disk[1]["passed"] is False
    assert on_disk[2]["measured"] == [1.0, 2.0] and on_disk[2]["profile"] == "quick"


def test_duplicate_ids_and_empty_claims_rejected(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        write_claims(tmp_path / "x.json", [Claim("a", "s", 1, "t", True)] * 2, "quick")
    with pytest.raises(ValueError):
        Claim("", "s", 1, "t", True)


def test_read_claims_validates_keys(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "a", "statement": "s"}]))
    with pytest.raises(ValueError, match="lacks keys"):
        read_claims(tmp_path / "bad.json")


def test_scorecard_aggregates_chapters(tmp_path):
    write_claims(tmp_path / "one.json", [Claim("a", "first", 1.0, "> 0", True, source="Fig. 1"),
                                         Claim("b", "second < with markup", 2.0, "> 3", False),
                                         Claim("k", "identity", 1e-14, "< 1e-9", True, kind="check")], "quick",
                 run={"profile": "quick", "seed": 0, "device": "cpu", "torch": "2.13.0", "date": "2026-12-01"})
    write_claims(tmp_path / "two.json", [Claim("c", "third", 0.1, "< 1", True)], "full")
    md = scorecard_markdown(tmp_path, {"one": "Chapter One"}, {"one": "01_one"})
    # paper claims and self-checks are counted separately
    assert "Across 2 chapters: **2 of 3 paper claims reproduced**, 1 not reproduced; 1 of 1 self-checks hold." in md
    assert "the quick profile on cpu, chapter seed 0" in md
    assert '<a href="01_one.html">Chapter One</a>' in md and "<td style" in md
    assert "2 of 3 paper claims" in md and "1 of 1" in md
    assert "second &lt; with markup" in md and 'href="01_one.html#claim-b"' in md   # one row per claim
    assert 'id="claim-b"' in claims_table_html(read_claims(tmp_path / "one.json"))   # the row it links to
    assert md.count(">not reproduced</span>") == 1 and md.count(">reproduced</span>") == 2
    assert md.count(">holds</span>") == 1
    assert "✅" not in md and "❌" not in md          # no emoji font needed
    assert "table-layout:fixed" in md                 # wraps instead of scrolling sideways
    # on a phone the header row is hidden: each count cell names its column (curvnb.css shows it)
    assert md.count('data-label="paper claims"') == md.count('data-label="self-checks"') == 2
    assert md.count('data-label="findings"') == 2
    assert "Run: quick profile, seed 0, cpu, torch 2.13.0, 2026-12-01." in md
    reordered = scorecard_markdown(tmp_path, {"two": "Chapter Two", "one": "Chapter One"})
    assert reordered.index("## Chapter Two") < reordered.index("## Chapter One")
    stale = scorecard_markdown(tmp_path, {"one": "Chapter One"}, warnings={"one": "latest run failed"})
    assert "(stale: latest run failed)" in stale and ":::{warning}\nlatest run failed\n:::" in stale


def test_scorecard_groups_findings_apart(tmp_path):
    write_claims(tmp_path / "one.json", [Claim("a", "paper", 1.0, "> 0", True),
                                         Claim("q1", "a finding", 0.5, "> 1", False, kind="finding")], "quick")
    write_claims(tmp_path / "atlas.json", [Claim("q2", "lazy K-FAC", 2.0, "> 1", True, kind="finding",
                                                 seeds=3, interval=(1.5, 2.5))], "quick")
    md = scorecard_markdown(tmp_path, {"one": "Chapter One", "atlas": "Atlas"})
    group = md.index("## Findings: the book's own questions")
    # paper claims stay with their chapter; every finding sits in the findings group, once
    assert md.index(">reproduced</span>") < group
    assert group < md.index("lazy K-FAC") and group < md.index("a finding")
    assert md.count("curvnb-verdict") == 3 and "findings: 1 of 2 yes, 1 no" in md
    assert "\n## Atlas" not in md and "### Atlas" in md and "### Chapter One" in md


def test_measured_values_formatted_for_readers():
    assert format_value(0.123456) == "0.123" and format_value(1.5e-10) == "1.50e-10"
    assert format_value({"max_step": 12.3456, "ok": True}) == "max step: 12.3; ok: true"
    assert format_value(list(range(10))) == "10 values in [0, 9]"
    html = claims_table_html([Claim("x", "s", {"ratio": 2.0}, "> 1", True, seeds=5, interval=(1.2, 3.4)).record("q")])
    assert "ratio: 2" in html and "95 % interval [1.2, 3.4] over 5 seeds" in html and "<details>" in html


def test_scorecard_without_runs(tmp_path):
    assert "No chapter has been executed yet" in scorecard_markdown(tmp_path)


def test_claims_table_html_escapes():
    html = claims_table_html([Claim("x", "a < b", math.pi, "<1", False).record("quick")])
    assert "a &lt; b" in html and "3.14" in html and ">not reproduced<" in html


def test_claim_statistics_fields(tmp_path):
    stat = Claim("s", "holds in the median", {"median": 2.0}, "> 1", True, seeds=5, interval=(1.5, 2.5),
                 source="Fig. 2")
    check = Claim("c", "identity", 1e-12, "< 1e-9", True, kind="check")
    run = {"chapter": "x", "seed": 0}
    records = write_claims(tmp_path / "x.json", [stat, check], "quick", run=run)
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["format"] == 3 and data["run"] == run and data["claims"] == records
    assert records[0]["interval"] == [1.5, 2.5] and records[0]["seeds"] == 5 and records[0]["kind"] == "paper"
    assert records[1]["kind"] == "check" and records[1]["interval"] is None and records[1]["seeds"] == 1
    assert "95 % interval [1.5, 2.5] over 5 seeds" in claims_table_html(records)
    with pytest.raises(ValueError, match="needs its interval"):
        Claim("s", "x", 1, "t", True, seeds=3)
    with pytest.raises(ValueError, match="kind"):
        Claim("s", "x", 1, "t", True, kind="guess")
    with pytest.raises(ValueError, match="low <= high"):
        Claim("s", "x", 1, "t", True, seeds=3, interval=(2.0, 1.0))


def test_format_1_files_still_read(tmp_path):
    old = [{"id": "a", "statement": "s", "measured": 1, "threshold": "t", "passed": True, "profile": "quick"}]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (record,) = read_claims(tmp_path / "old.json")
    assert record["kind"] == "paper" and record["seeds"] == 1 and record["interval"] is None
    assert record["rule"] == "legacy" and record["verdict"] == "reproduced"
