"""Claims: what a study says, what our run measured, and whether it holds.

Each executed chapter writes ``_build/claims/<chapter>.json``, an object::

    {"format": 2,
     "run": {"chapter", "profile", "seed", "device", "torch", "curvnb", "sources_sha256",
             "date", "wall_time_s"},
     "claims": [record, ...]}

Every record has the keys of format 1 with unchanged meaning — ``id``, ``statement``,
``measured``, ``threshold``, ``passed``, ``profile`` — plus

- ``kind``: ``"paper"`` (restates a statement of the paper), ``"check"`` (a self-check of our
  machinery or an algebraic identity) or ``"finding"`` (the book's own question);
- ``seeds``: how many independent seeds entered the tested statistic (1 for deterministic claims);
- ``interval``: ``[low, high]``, a 95 % interval of the tested statistic over those seeds
  (bootstrap, or exact for counts; see :mod:`curvnb.stats`), ``null`` for deterministic claims;
- ``source``: where in the paper the restated statement comes from (may be empty).

Format 1 files (a bare list of records) are still read: :func:`read_claims` returns the records
of either format, filling the new keys with their defaults.
"""
from __future__ import annotations

import html
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

CLAIM_KEYS = ("id", "statement", "measured", "threshold", "passed", "profile")
RECORD_KEYS = CLAIM_KEYS + ("kind", "seeds", "interval", "source")
KINDS = ("paper", "check", "finding")
FORMAT = 2
RECORD_DEFAULTS = {"kind": "paper", "seeds": 1, "interval": None, "source": ""}


def _plain(value: Any) -> Any:
    """JSON-safe version of a measured value (NumPy scalars/arrays, tuples, non-finite floats)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Claim:
    """One checkable claim: ``passed`` must be computed from ``measured``, never typed in.

    A claim about a random quantity is evaluated over ``seeds`` independent seeds and carries
    ``interval``, a 95 % interval of its tested statistic (:mod:`curvnb.stats`)."""

    id: str
    statement: str
    measured: Any
    threshold: str
    passed: bool
    kind: str = "paper"
    seeds: int = 1
    interval: tuple[float, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.id or not self.statement:
            raise ValueError("a claim needs an id and a statement")
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, (int, np.integer)) or self.seeds < 1:
            raise ValueError(f"claim {self.id!r}: seeds must be a positive integer, got {self.seeds!r}")
        if self.interval is not None:
            lo, hi = (float(v) for v in self.interval)
            if not lo <= hi:  # also rejects NaN
                raise ValueError(f"claim {self.id!r}: interval must be (low, high) with low <= high")
            object.__setattr__(self, "interval", (lo, hi))
        elif self.seeds > 1:
            raise ValueError(f"claim {self.id!r}: a statistic over {self.seeds} seeds needs its interval")
        object.__setattr__(self, "seeds", int(self.seeds))
        object.__setattr__(self, "passed", bool(self.passed))
        object.__setattr__(self, "measured", _plain(self.measured))

    def record(self, profile: str) -> dict[str, Any]:
        return {"id": self.id, "statement": self.statement, "measured": self.measured,
                "threshold": self.threshold, "passed": self.passed, "profile": profile,
                "kind": self.kind, "seeds": self.seeds,
                "interval": None if self.interval is None else [_plain(v) for v in self.interval],
                "source": self.source}


def format_interval(record: dict[str, Any]) -> str:
    """``"95 % interval [a, b] over n seeds"`` for a statistical record, ``""`` otherwise."""
    interval = record.get("interval")
    if not interval:
        return ""
    lo, hi = interval
    return f"95 % interval [{format_value(lo)}, {format_value(hi)}] over {record.get('seeds', 1)} seeds"


def write_claims(path: Path, claims: Sequence[Claim], profile: str,
                 run: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Atomically write the chapter's claims file (records + ``run`` metadata); returns the records.

    Duplicate ids are an error."""
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    records = [c.record(profile) for c in claims]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"format": FORMAT, "run": _plain(run or {}), "claims": records}, f, indent=2)
    os.replace(tmp, path)
    return records


def read_claims_file(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(run metadata, records)`` of one chapter's claims file, format 1 or 2, validated."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):  # format 1: a bare list of records, no run metadata
        run, records = {}, data
    elif isinstance(data, dict) and isinstance(data.get("claims"), list):
        run, records = data.get("run") or {}, data["claims"]
    else:
        raise ValueError(f"{path}: expected a list of claim records or an object with 'claims'")
    for r in records:
        missing = [k for k in CLAIM_KEYS if k not in r]
        if missing:
            raise ValueError(f"{path}: claim {r.get('id')!r} lacks keys {missing}")
        for key, default in RECORD_DEFAULTS.items():
            r.setdefault(key, default)
    return run, records


def read_claims(path: Path) -> list[dict[str, Any]]:
    """Read and validate one chapter's claim records (either format)."""
    return read_claims_file(path)[1]


VERDICTS = {  # kind -> (text when passed, text when not)
    "paper": ("reproduced", "not reproduced"),
    "check": ("holds", "fails"),
    "finding": ("yes", "no"),
}
_BADGE = ("display:inline-block;padding:1px 7px;border-radius:4px;font-weight:600;font-size:0.85em;"
          "white-space:normal;color:#fff;background:{}")
_PASS_COLOUR, _FAIL_COLOUR = "#1a7f37", "#b42318"   # text badges: readable without colour too


def verdict(record: dict[str, Any]) -> str:
    """The reader's word for a record's result: "reproduced", "not reproduced", "holds", ..."""
    yes, no = VERDICTS.get(record.get("kind", "paper"), VERDICTS["paper"])
    return yes if record["passed"] else no


def verdict_badge(record: dict[str, Any]) -> str:
    colour = _PASS_COLOUR if record["passed"] else _FAIL_COLOUR
    return f'<span class="curvnb-verdict" style="{_BADGE.format(colour)}">{verdict(record)}</span>'


def _number(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}".replace("e-0", "e-").replace("e+0", "e")


def format_value(value: Any, limit: int = 6) -> str:
    """A measured value for a reader: 3 significant digits, short lists, ``name: value`` pairs."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _number(float(value))
    if isinstance(value, (list, tuple)):
        if len(value) > limit and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return f"{len(value)} values in [{_number(min(value))}, {_number(max(value))}]"
        return "[" + ", ".join(format_value(v, limit) for v in value) + "]"
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {format_value(v, limit)}" for k, v in value.items())
    return str(value)


def _measured_html(record: dict[str, Any]) -> str:
    value = record["measured"]
    if isinstance(value, dict):
        text = "<br>".join(f"{html.escape(str(k).replace('_', ' '))}: {html.escape(format_value(v))}"
                           for k, v in value.items())
    else:
        text = html.escape(format_value(value))
    extra = format_interval(record)
    if extra:
        text += f'<br><span style="color:#555">{html.escape(extra)}</span>'
    return text


_TABLE_STYLE = ("width:100%;max-width:100%;box-sizing:border-box;table-layout:fixed;border-collapse:collapse;font-size:0.9em;"
                "overflow-wrap:anywhere;word-break:normal")
_CELL_STYLE = "vertical-align:top;padding:4px 6px;border-bottom:1px solid #ddd;text-align:left;box-sizing:border-box"
_COLUMNS = (("claim", "40%"), ("measured", "27%"), ("threshold", "15%"), ("result", "18%"))


def claims_table_html(records: Iterable[dict[str, Any]]) -> str:
    """The claims table a chapter shows at its end (and the scorecard repeats): one row per claim,
    its source in the paper, the formatted measurement with interval and seeds, the threshold and
    a verdict badge; failing rows tinted. Fixed layout: wraps, never scrolls sideways."""
    rows = []
    for r in records:
        source = f'<br><span style="color:#555;font-size:0.9em">Source: {html.escape(r["source"])}</span>' \
            if r.get("source") else ""
        kind = {"check": " (self-check)", "finding": " (finding)"}.get(r.get("kind", "paper"), "")
        claim = f"<b>{html.escape(str(r['id']))}</b>{kind}: {html.escape(str(r['statement']))}{source}"
        tint = "" if r["passed"] else ' style="background:#fdf1f0"'
        cells = (claim, _measured_html(r), html.escape(str(r["threshold"])), verdict_badge(r))
        rows.append(f'<tr class="curvnb-{"pass" if r["passed"] else "fail"}"{tint}>'
                    + "".join(f'<td style="{_CELL_STYLE}">{c}</td>' for c in cells) + "</tr>")
    head = "".join(f'<th style="{_CELL_STYLE};width:{w}">{h}</th>' for h, w in _COLUMNS)
    return (f'<table class="curvnb-claims" style="{_TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def tally(records: Iterable[dict[str, Any]], kind: str) -> tuple[int, int]:
    """``(passed, total)`` of the records of one kind."""
    of_kind = [r for r in records if r.get("kind", "paper") == kind]
    return sum(bool(r["passed"]) for r in of_kind), len(of_kind)


def scorecard_markdown(claims_dir: Path, chapter_titles: dict[str, str] | None = None,
                       chapter_pages: dict[str, str] | None = None,
                       warnings: dict[str, str] | None = None) -> str:
    """The book's scorecard page, aggregated from every ``<chapter>.json`` in ``claims_dir``.

    ``chapter_titles`` maps chapter ids to titles, in the book's order; ``chapter_pages`` maps
    ids to the chapters' page names (``03_huh2020``) for links; ``warnings`` maps ids to a warning
    shown with that chapter (e.g. its latest run failed). Paper claims, self-checks and findings
    are counted separately."""
    chapter_titles, chapter_pages, warnings = chapter_titles or {}, chapter_pages or {}, warnings or {}
    order = {name: i for i, name in enumerate(chapter_titles)}  # book order first, then by name
    files = sorted(Path(claims_dir).glob("*.json"), key=lambda f: (order.get(f.stem, len(order)), f.stem))
    per_chapter = [(f.stem, *read_claims_file(f)) for f in files]
    lines = ["# Reproducibility scorecard", "",
             "Each chapter restates checkable statements of its paper — the book's restatements, "
             "not quotations; each row says where in the paper it comes from — and checks them on "
             "its own run. *Paper claims* are those restatements; *self-checks* test the book's own "
             "machinery or an exact identity; *findings* are the book's own questions. A statement "
             "about a random quantity is judged over independent seeds and shown with a 95 % "
             "interval. A claim that does not reproduce is shown as such. This page is generated "
             "by `curvnb build` from `_build/claims/<chapter>.json`.", ""]
    if not per_chapter:
        lines.append("No chapter has been executed yet: run `curvnb run` first.")
        return "\n".join(lines) + "\n"
    everything = [r for _, _, records in per_chapter for r in records]
    paper, checks, findings = (tally(everything, k) for k in KINDS)
    summary = f"**{paper[0]} of {paper[1]} paper claims reproduced** across {len(per_chapter)} chapters"
    summary += f"; {checks[0]} of {checks[1]} self-checks hold" if checks[1] else ""
    summary += f"; {findings[0]} of {findings[1]} findings answered yes" if findings[1] else ""
    lines += [summary + ".", ""]
    head = "".join(f'<th style="{_CELL_STYLE}">{h}</th>' for h in
                   ("chapter", "profile", "paper claims reproduced", "self-checks hold", "findings: yes"))
    rows = []
    for name, run, records in per_chapter:
        title = html.escape(chapter_titles.get(name, name))
        link = f'<a href="{chapter_pages[name]}.html">{title}</a>' if name in chapter_pages else title
        if name in warnings:
            link += ' <b style="color:#b42318">(stale: latest run failed)</b>'
        profiles = ", ".join(sorted({r["profile"] for r in records})) or "–"
        counts = [tally(records, k) for k in KINDS]
        cells = (link, profiles, *(f"{k} of {n}" if n else "–" for k, n in counts))
        rows.append("<tr>" + "".join(f'<td style="{_CELL_STYLE}">{c}</td>' for c in cells) + "</tr>")
    lines += [f'<table class="curvnb-scorecard" style="{_TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
              f"<tbody>{''.join(rows)}</tbody></table>", ""]
    def section(name: str, run: dict, records: list[dict[str, Any]], level: str) -> list[str]:
        out = ["", f"{level} {chapter_titles.get(name, name)}", ""]
        if name in warnings:
            out += [":::{warning}", warnings[name], ":::", ""]
        if run:
            out += [f"Run: {run.get('profile', '?')} profile, seed {run.get('seed', '?')}, "
                    f"{run.get('device', '?')}, torch {run.get('torch', '?')}, {run.get('date', '?')}.", ""]
        return out + [claims_table_html(records), ""]

    # Paper claims and self-checks per chapter; the book's own questions in a group of their own.
    for name, run, records in per_chapter:
        claimed = [r for r in records if r.get("kind", "paper") != "finding"]
        if claimed:
            lines += section(name, run, claimed, "##")
    with_findings = [(name, run, [r for r in records if r.get("kind") == "finding"])
                     for name, run, records in per_chapter]
    with_findings = [entry for entry in with_findings if entry[2]]
    if with_findings:
        lines += ["", "## Findings: the book's own questions", "",
                  "Questions the book asks of its own runs, each with its statistic and threshold fixed "
                  "before running. *Yes* and *no* answer the question on this run; they are not "
                  "claims of any paper."]
        for name, run, findings in with_findings:
            lines += section(name, run, findings, "###")
    return "\n".join(lines) + "\n"
