"""Claims: what a study says, what our run measured, and whether it holds.

Each executed chapter writes ``_build/claims/<chapter>.json``: a list of objects with the
keys ``id``, ``statement``, ``measured``, ``threshold``, ``passed`` and ``profile``. This
format is stable; the book's scorecard and outside tools read it.
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
    """One checkable claim: ``passed`` must be computed from ``measured``, never typed in."""

    id: str
    statement: str
    measured: Any
    threshold: str
    passed: bool

    def __post_init__(self) -> None:
        if not self.id or not self.statement:
            raise ValueError("a claim needs an id and a statement")
        object.__setattr__(self, "passed", bool(self.passed))
        object.__setattr__(self, "measured", _plain(self.measured))

    def record(self, profile: str) -> dict[str, Any]:
        return {"id": self.id, "statement": self.statement, "measured": self.measured,
                "threshold": self.threshold, "passed": self.passed, "profile": profile}


def format_measured(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_measured(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_measured(v)}" for k, v in value.items())
    return str(value)


def write_claims(path: Path, claims: Sequence[Claim], profile: str) -> list[dict[str, Any]]:
    """Atomically write the chapter's claim records; duplicate ids are an error."""
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    records = [c.record(profile) for c in claims]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(records, f, indent=2)
    os.replace(tmp, path)
    return records


def read_claims(path: Path) -> list[dict[str, Any]]:
    """Read and validate one chapter's claims file."""
    records = json.loads(Path(path).read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of claim records")
    for r in records:
        missing = [k for k in CLAIM_KEYS if k not in r]
        if missing:
            raise ValueError(f"{path}: claim {r.get('id')!r} lacks keys {missing}")
    return records


def claims_table_html(records: Iterable[dict[str, Any]]) -> str:
    """An HTML table of claim records (what a chapter shows at its end)."""
    rows = []
    for r in records:
        mark = "✅ reproduced" if r["passed"] else "❌ not reproduced"
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
                r["id"], r["statement"], format_measured(r["measured"]), r["threshold"], mark)) + "</tr>")
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
                r["id"], r["statement"], format_measured(r["measured"]), r["threshold"], mark)) + " |")
    return "\n".join(lines) + "\n"
