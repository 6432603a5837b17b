import json
import math

import numpy as np
import pytest

from curvnb.claims import CLAIM_KEYS, Claim, claims_table_html, read_claims, scorecard_markdown, write_claims


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
    write_claims(tmp_path / "one.json", [Claim("a", "first", 1.0, "> 0", True),
                                         Claim("b", "second | with pipe", 2.0, "> 3", False)], "quick")
    write_claims(tmp_path / "two.json", [Claim("c", "third", 0.1, "< 1", True)], "full")
    md = scorecard_markdown(tmp_path, {"one": "Chapter One"})
    assert "**2 of 3 claims reproduced** across 2 chapters." in md
    assert "| Chapter One | quick | 2 | 1 |" in md
    assert "| two | full | 1 | 1 |" in md
    assert "second \\| with pipe" in md
    assert md.count("❌ not reproduced") == 1 and md.count("✅ reproduced") == 2
    reordered = scorecard_markdown(tmp_path, {"two": "Chapter Two", "one": "Chapter One"})
    assert reordered.index("## Chapter Two") < reordered.index("## Chapter One")


def test_scorecard_without_runs(tmp_path):
    assert "No chapter has been executed yet" in scorecard_markdown(tmp_path)


def test_claims_table_html_escapes():
    html = claims_table_html([Claim("x", "a < b", math.pi, "<1", False).record("quick")])
    assert "a &lt; b" in html and "3.142" in html and "not reproduced" in html


def test_claim_statistics_fields(tmp_path):
    stat = Claim("s", "holds in the median", {"median": 2.0}, "> 1", True, seeds=5, interval=(1.5, 2.5),
                 source="Fig. 2")
    check = Claim("c", "identity", 1e-12, "< 1e-9", True, kind="check")
    run = {"chapter": "x", "seed": 0}
    records = write_claims(tmp_path / "x.json", [stat, check], "quick", run=run)
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["format"] == 2 and data["run"] == run and data["claims"] == records
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
