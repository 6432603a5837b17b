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
    return f"95 % interval [{format_measured(lo)}, {format_measured(hi)}] over {record.get('seeds', 1)} seeds"


def _measured_cell(record: dict[str, Any]) -> str:
    text = format_measured(record["measured"])
    extra = format_interval(record)
    return f"{text}; {extra}" if extra else text


def format_measured(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_measured(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_measured(v)}" for k, v in value.items())
    return str(value)


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


def claims_table_html(records: Iterable[dict[str, Any]]) -> str:
    """An HTML table of claim records (what a chapter shows at its end)."""
    rows = []
    for r in records:
        mark = "✅ reproduced" if r["passed"] else "❌ not reproduced"
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
                r["id"], r["statement"], _measured_cell(r), r["threshold"], mark)) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("claim", "statement", "measured", "threshold", "result"))
    return (f'<table class="curvnb-claims"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def scorecard_markdown(claims_dir: Path, chapter_titles: dict[str, str] | None = None) -> str:
    """The book's scorecard page, aggregated from every ``<chapter>.json`` in ``claims_dir``.

    ``chapter_titles`` maps chapter ids to titles, in the book's order."""
    chapter_titles = chapter_titles or {}
    order = {name: i for i, name in enumerate(chapter_titles)}  # book order first, then by name
    files = sorted(Path(claims_dir).glob("*.json"), key=lambda f: (order.get(f.stem, len(order)), f.stem))
    per_chapter = [(f.stem, read_claims(f)) for f in files]
    total = sum(len(r) for _, r in per_chapter)
    passed = sum(sum(x["passed"] for x in r) for _, r in per_chapter)
    lines = ["# Reproducibility scorecard", "",
             "Every chapter checks its study's claims on its own run and writes the results to "
             "`_build/claims/<chapter>.json`; this page is generated from those files by "
             "`curvnb build`. A claim that does not reproduce is shown as such.", ""]
    if not per_chapter:
        lines.append("No chapter has been executed yet: run `curvnb run` first.")
        return "\n".join(lines) + "\n"
    lines += [f"**{passed} of {total} claims reproduced** across {len(per_chapter)} chapters.", "",
              "| chapter | profile | claims | reproduced |", "|---|---|---|---|"]
    for name, records in per_chapter:
        profiles = ", ".join(sorted({r["profile"] for r in records})) or "–"
        lines.append(f"| {_md_cell(chapter_titles.get(name, name))} | {profiles} | {len(records)} | "
                     f"{sum(r['passed'] for r in records)} |")
    for name, records in per_chapter:
        lines += ["", f"## {_md_cell(chapter_titles.get(name, name))}", "",
                  "| claim | statement | measured | threshold | result |", "|---|---|---|---|---|"]
        for r in records:
            mark = "✅ reproduced" if r["passed"] else "❌ not reproduced"
            lines.append("| " + " | ".join(_md_cell(x) for x in (
                r["id"], r["statement"], _measured_cell(r), r["threshold"], mark)) + " |")
    return "\n".join(lines) + "\n"
