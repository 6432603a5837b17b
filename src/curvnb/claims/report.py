"""One report layer over claim records: verdict words and badges, formatted values, the claims
table, the "what we found" paragraph and the scorecard — for engine and legacy records alike."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from curvnb.claims.records import KINDS, VERDICT_VALUES, read_claims_file

VERDICTS = {  # kind -> reader's words for (reproduced, not reproduced, inconclusive)
    "paper": ("reproduced", "not reproduced", "inconclusive"),
    "check": ("holds", "fails", "inconclusive"),
    "finding": ("yes", "no", "inconclusive"),
}
KIND_NAMES = {"paper": "paper claims", "check": "self-checks", "finding": "findings"}
# Okabe–Ito blue and vermillion, and a grey; the badge's text says the verdict without colour too.
COLOURS = {"reproduced": "#0072B2", "not reproduced": "#D55E00", "inconclusive": "#5f5f5f"}
SMOKE_NOTE = "smoke test run — not evidence"
CHANGES_PAGE = "changes"   # the book's Changes appendix page (book/changes.md)
METHOD_WORDS = {"order-statistic": "exact order statistics", "student-t": "Student t", "welch": "Welch t",
                "clopper-pearson": "exact binomial", "bootstrap": "bootstrap", "deterministic": "deterministic",
                "simultaneous-order-statistic": "simultaneous exact intervals of the medians",
                "simultaneous-clopper-pearson": "simultaneous exact binomial intervals"}
_MUTED = 'style="color:#555;font-size:0.9em"'


def record_verdict(record: dict[str, Any]) -> str:
    """reproduced / not reproduced / inconclusive (legacy records: from ``passed``)."""
    v = record.get("verdict") or ("reproduced" if record["passed"] else "not reproduced")
    if v not in VERDICT_VALUES:
        raise ValueError(f"claim {record.get('id')!r}: unknown verdict {v!r}")
    return v


def verdict(record: dict[str, Any]) -> str:
    """The reader's word for a record's verdict, by kind: reproduced / holds / yes, ..."""
    words = VERDICTS.get(record.get("kind", "paper"), VERDICTS["paper"])
    return words[VERDICT_VALUES.index(record_verdict(record))]


def verdict_badge(record: dict[str, Any]) -> str:
    """A text badge: solid blue (reproduced), solid vermillion (not reproduced), outlined grey
    (inconclusive) — three shapes of colour, readable in grey scale; smoke runs say so."""
    v = record_verdict(record)
    colour = COLOURS[v]
    look = (f"color:#fff;background:{colour};border:1px solid {colour}" if v != "inconclusive"
            else f"color:{colour};background:#fff;border:1px dashed {colour}")
    badge = (f'<span class="curvnb-verdict curvnb-{v.replace(" ", "-")}" style="display:inline-block;'
             f'padding:0 6px;border-radius:4px;font-weight:600;font-size:0.85em;{look}">{verdict(record)}</span>')
    if record.get("profile") == "smoke":
        badge += f'<br><span {_MUTED}><i>{SMOKE_NOTE}</i></span>'
    return badge


def _number(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}".replace("e-0", "e-").replace("e+0", "e")


def _short(value: float) -> str:
    """A threshold or tolerance as written: 1e-9, 0.5, 100."""
    return f"{value:.3g}".replace("e-0", "e-").replace("e+0", "e")


def format_value(value: Any, limit: int = 6) -> str:
    """A measured value for a reader: 3 significant digits, short lists, ``name: value`` pairs."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _number(float(value)) if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        if len(value) > limit and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return f"{len(value)} values in [{_number(min(value))}, {_number(max(value))}]"
        return "[" + ", ".join(format_value(v, limit) for v in value) + "]"
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {format_value(v, limit)}" for k, v in value.items())
    return str(value)


def _units(record: dict[str, Any], n: int | None = None) -> str:
    n = record.get("n_units", record.get("seeds", 1)) if n is None else n
    unit = record.get("unit") or "seed"
    return f"{n} {unit if n == 1 or unit.endswith('s') else unit + 's'}"


def format_estimate(record: dict[str, Any]) -> str:
    """The tested value with its unit; an exact value below its tolerance reads "< tol"."""
    if record.get("rule") != "engine":
        return format_value(record["measured"])
    value, unit = record["estimate"], f" {record['physical_unit']}" if record.get("physical_unit") else ""
    t, delta = record["threshold_value"], record.get("delta")
    if isinstance(value, (int, float)) and record.get("method") == "deterministic":
        if record["direction"] == "less" and t > 0 and abs(value) < t / 100:
            return f"< {_short(t)}{unit}"
        if record["direction"] == "exact" and abs(value - t) < delta / 100:
            return f"{_short(t)} (within {_short(delta)}){unit}" if t else f"< {_short(delta)}{unit}"
    text = (format_value(value) if isinstance(value, (int, float)) else str(value)) + unit
    return f"{record['quantity']}: {text}" if record.get("quantity") else text


def format_interval(record: dict[str, Any]) -> str:
    """``"95 % interval [a, b] over n seeds"``, or why a statistic has none; ``""`` when deterministic."""
    interval = record.get("interval")
    if interval:
        lo, hi = interval
        method = METHOD_WORDS.get(record.get("method"), "")
        return (f"95 % interval [{format_value(lo)}, {format_value(hi)}] over {_units(record)}"
                + (f" ({method})" if method and record.get("rule") == "engine" else ""))
    if record.get("rule") == "engine" and record.get("method") != "deterministic":
        return f"no 95 % interval over {_units(record)}: {record.get('reason') or 'unbounded'}"
    return ""


def decision_note(record: dict[str, Any]) -> str:
    """For an inconclusive engine record: where the estimate lies and what would decide it."""
    if record.get("rule") != "engine" or record_verdict(record) != "inconclusive":
        found = record.get("direction_found")
        return f"effect found: {'above' if found == 'greater' else 'below'} {_number(record['threshold_value'])}" \
            if found and record.get("direction") == "two-sided" and record_verdict(record) == "reproduced" else ""
    t, delta = _short(record["threshold_value"]), record.get("delta")
    if delta is None:
        side = {"claimed": "on the claimed side", "other": "on the other side", "on": "on the threshold"}
        where = f"the estimate lies {side[record['side']]}, the interval contains the threshold {t}"
    else:
        inside = (record["side"] == "other") == (record["direction"] == "two-sided")
        where = (f"the estimate lies {'inside' if inside else 'outside'} {t} ± {_short(delta)}, "
                 "the interval crosses its edge")
    need = record.get("units_to_decide")
    more = f"; about {_units(record, need)} would decide it at this spread" if need else ""
    return where + more


def _per_unit_html(record: dict[str, Any]) -> str:
    """Per-unit values and any extra detail, folded in a <details> element."""
    parts = []
    values = record.get("values") or {}
    labels = list(record.get("labels") or ()) + ["group a", "group b"][len(record.get("labels") or ()):]
    for key in ("x", "a", "b"):
        if isinstance(values.get(key), list) and len(values[key]) > 1:
            name = {"x": "per " + (record.get("unit") or "unit"), "a": labels[0], "b": labels[1]}[key]
            parts.append(f"{name}: " + ", ".join(format_value(v) for v in values[key]))
    detail = record.get("detail") or (record["measured"] if record.get("rule") != "engine"
                                      and isinstance(record["measured"], (dict, list)) else {})
    if isinstance(detail, dict):
        parts += [f"{str(k).replace('_', ' ')}: {format_value(v, limit=12)}" for k, v in detail.items()]
    elif detail:
        parts.append(format_value(detail, limit=12))
    if not parts:
        return ""
    body = "<br>".join(html.escape(p) for p in parts)
    return f'<details><summary {_MUTED}>details</summary><span {_MUTED}>{body}</span></details>'


def coverage_note(record: dict[str, Any]) -> str:
    """The interval's simulated coverage at this unit count (``make coverage``), where it is known."""
    sim = record.get("simulated_coverage")
    if not sim:
        return ""
    text = f"this interval covered {sim['coverage']:.1%} in simulation at {sim['n_units']} units (nominal 95 %)"
    return text + (": below nominal, so the verdict is less certain than it reads" if not sim["accepted"] else "")


def _measured_html(record: dict[str, Any]) -> str:
    legacy_long = record.get("rule") != "engine" and isinstance(record["measured"], (dict, list))
    text = "see details" if legacy_long else html.escape(format_estimate(record))
    for extra in (format_interval(record), decision_note(record), coverage_note(record)):
        if extra:
            text += f"<br><span {_MUTED}>{html.escape(extra)}</span>"
    return text + _per_unit_html(record)


_TABLE_STYLE = ("width:100%;max-width:100%;box-sizing:border-box;table-layout:fixed;border-collapse:collapse;"
                "font-size:0.9em;overflow-wrap:break-word;word-break:normal;hyphens:auto")
_CELL_STYLE = "vertical-align:top;padding:4px 6px;border-bottom:1px solid #ddd;text-align:left;box-sizing:border-box"
_COLUMNS = (("claim", "40%"), ("measured", "30%"), ("rule", "13%"), ("result", "17%"))


def anchor(record: dict[str, Any]) -> str:
    """The HTML id of a claim's row in its chapter's table (the scorecard links to it)."""
    return "claim-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in str(record["id"]))


def pooled_line(pooled: dict[str, Any]) -> str:
    """"pooled over a sweep: reproduced — 15 seeds, 5 chapter seeds", linked to the robustness page."""
    v, n, k = record_verdict(pooled), pooled["n_units"], len(pooled["pooled"]["chapter_seeds"])
    unit = pooled.get("unit") or "unit"
    return (f'<span {_MUTED}><a href="seed_robustness.html">pooled over a sweep</a>: '
            f'<b style="color:{COLOURS[v]}">{html.escape(verdict(pooled))}</b> — {n} {html.escape(unit)}s, '
            f'{k} chapter seeds</span>')


def scorecard_rows_html(records: Iterable[dict[str, Any]], page: str | None = None,
                        pooled: dict[str, dict[str, Any]] | None = None) -> str:
    """The scorecard's compact table: one row per claim — its id (linked to its row in the chapter,
    ``page``), statement, and the badge with the value and interval; where a sweep pooled the claim's
    units (``pooled``: claim id → pooled record), the pooled verdict beside it. Two columns: reads on
    a phone."""
    pooled = pooled or {}
    rows = []
    for r in records:
        name = f"<b>{html.escape(str(r['id']))}</b>"
        if page:
            name = f'<a href="{page}.html#{anchor(r)}">{name}</a>'
        kind = {"check": " (self-check)", "finding": " (finding)"}.get(r.get("kind", "paper"), "")
        interval = format_interval(r)
        long = r.get("rule") != "engine" and isinstance(r["measured"], (dict, list))   # detail: in the chapter
        result = (verdict_badge(r) + ("" if long else f"<br>{html.escape(format_estimate(r))}")
                  + (f"<br><span {_MUTED}>{html.escape(interval)}</span>" if interval else "")
                  + (f"<br>{pooled_line(pooled[r['id']])}" if r["id"] in pooled else ""))
        cells = (f"{name}{kind}: {html.escape(str(r['statement']))}", result)
        rows.append("<tr>" + "".join(f'<td style="{_CELL_STYLE}">{c}</td>' for c in cells) + "</tr>")
    head = "".join(f'<th style="{_CELL_STYLE};width:{w}">{h}</th>' for h, w in (("claim", "58%"), ("result", "42%")))
    return (f'<table class="curvnb-claims curvnb-scorecard-claims" style="{_TABLE_STYLE}"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def claims_table_html(records: Iterable[dict[str, Any]]) -> str:
    """The claims table: one row per claim — statement and source, formatted value with interval,
    units and folded per-unit detail, the rule, a verdict badge. Wraps, never scrolls sideways."""
    rows = []
    for r in records:
        source = f'<br><span {_MUTED}>Source: {html.escape(r["source"])}</span>' if r.get("source") else ""
        kind = {"check": " (self-check)", "finding": " (finding)"}.get(r.get("kind", "paper"), "")
        claim = f"<b>{html.escape(str(r['id']))}</b>{kind}: {html.escape(str(r['statement']))}{source}"
        if r.get("changed"):
            claim += (f'<br><span {_MUTED}>This claim\'s rule changed after a first run: see '
                      f'<a href="{CHANGES_PAGE}.html#{html.escape(r["changed"])}">Changes</a>.</span>')
        v = record_verdict(r)
        cells = (claim, _measured_html(r), html.escape(str(r["threshold"])), verdict_badge(r))
        rows.append(f'<tr id="{anchor(r)}" class="curvnb-{"pass" if v == "reproduced" else "fail" if v == "not reproduced" else "open"}">'
                    + "".join(f'<td style="{_CELL_STYLE}">{c}</td>' for c in cells) + "</tr>")
    head = "".join(f'<th style="{_CELL_STYLE};width:{w}">{h}</th>' for h, w in _COLUMNS)
    return (f'<table class="curvnb-claims" style="{_TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def tally(records: Iterable[dict[str, Any]], kind: str) -> tuple[int, int]:
    """``(reproduced, total)`` of the records of one kind."""
    of_kind = [r for r in records if r.get("kind", "paper") == kind]
    return sum(record_verdict(r) == "reproduced" for r in of_kind), len(of_kind)


def counts(records: Iterable[dict[str, Any]], kind: str) -> dict[str, int]:
    """How many records of one kind have each verdict (keys: reproduced, not reproduced, inconclusive)."""
    out = dict.fromkeys(VERDICT_VALUES, 0)
    for r in records:
        if r.get("kind", "paper") == kind:
            out[record_verdict(r)] += 1
    return out


def count_sentence(records: list[dict[str, Any]], kind: str) -> str:
    """E.g. "4 of 7 paper claims reproduced, 1 not reproduced, 2 inconclusive", "findings: 1 of 3
    yes, 1 no, 1 inconclusive" ("" when none)."""
    c = counts(records, kind)
    total = sum(c.values())
    if not total:
        return ""
    words = VERDICTS[kind]
    rest = [f"{c[v]} {w}" for v, w in zip(VERDICT_VALUES[1:], words[1:]) if c[v]]
    if kind == "finding":   # answered yes / no / inconclusive
        return f"{KIND_NAMES[kind]}: {c['reproduced']} of {total} yes" + "".join(f", {p}" for p in rest)
    verb = {"paper": words[0], "check": "hold"}[kind]
    return f"{c['reproduced']} of {total} {KIND_NAMES[kind]} {verb}" + "".join(f", {p}" for p in rest)


def by_verdict(record: dict[str, Any], reproduced: str, not_reproduced: str, inconclusive: str) -> str:
    """The study's own explanation, picked by the record's verdict (narrative conditioned on it)."""
    return {"reproduced": reproduced, "not reproduced": not_reproduced,
            "inconclusive": inconclusive}[record_verdict(record)]


def what_we_found(records: list[dict[str, Any]]) -> str:
    """A generated paragraph (markdown): counts per kind, then one sentence per claim that did not
    reproduce or is inconclusive, with its value, interval and what would decide it."""
    if not records:
        return ""
    lines = ["; ".join(s for s in (count_sentence(records, k) for k in KINDS) if s) + "."]
    for r in records:
        v = record_verdict(r)
        if v == "reproduced":
            continue
        interval = format_interval(r)
        text = f"- **{r['id']}** ({verdict(r)}): {format_estimate(r)}" + (f", {interval}" if interval else "")
        note = decision_note(r)
        lines.append(text + (f"; {note}" if note else "") + ".")
    if any(r.get("profile") == "smoke" for r in records):
        lines.append(f"\n*This is a {SMOKE_NOTE}.*")
    return "\n".join(lines)


def data_label(label: str) -> str:
    """A cell's column name for the phone layout (curvnb.css shows it where the header row is hidden)."""
    return f' data-label="{html.escape(label)}"' if label else ""


def _cell(records: list[dict[str, Any]], kind: str) -> str:
    """One line per verdict that occurs ("2 reproduced", "1 inconclusive"): narrow enough for a phone."""
    c = counts(records, kind)
    if not sum(c.values()):
        return "–"
    return "<br>".join(f'<span style="color:{COLOURS[v]}">{c[v]} {w}</span>'
                       for v, w in zip(VERDICT_VALUES, VERDICTS[kind]) if c[v])


def scorecard_markdown(claims_dir: Path, chapter_titles: dict[str, str] | None = None,
                       chapter_pages: dict[str, str] | None = None,
                       warnings: dict[str, str] | None = None,
                       pooled: dict[tuple[str, str], dict[str, dict[str, Any]]] | None = None) -> str:
    """The book's scorecard page, aggregated from every ``<chapter>.json`` in ``claims_dir``.
    ``pooled``: ``(profile, chapter) -> {claim id: pooled record}`` from a sweep
    (:func:`curvnb.robustness.pooled_verdicts`), shown beside the chapter's own verdicts.

    ``chapter_titles``: ids → titles, in the book's order; ``chapter_pages``: ids → page names
    (``03_huh2020``) for links; ``warnings``: ids → a warning shown with that chapter. Per chapter
    the counts of reproduced / not reproduced / inconclusive; findings in a group of their own."""
    chapter_titles, chapter_pages, warnings = chapter_titles or {}, chapter_pages or {}, warnings or {}
    order = {name: i for i, name in enumerate(chapter_titles)}
    files = sorted(Path(claims_dir).glob("*.json"), key=lambda f: (order.get(f.stem, len(order)), f.stem))
    per_chapter = [(f.stem, *read_claims_file(f)) for f in files]
    lines = ["# Reproducibility scorecard", "",
             "Each chapter restates checkable statements of its paper — the book's restatements, "
             "not quotations; each row says where in the paper it comes from — and tests them on its "
             "own run. *Paper claims* restate the papers; *self-checks* test the book's own machinery "
             "or an exact identity; *findings* are the book's own questions. A statement about a "
             "random quantity is a statistic over independent units (seeds, networks, runs) with a "
             "95 % interval: *reproduced* when the whole interval lies on the claimed side of its "
             "threshold, *not reproduced* when it lies wholly on the other side, *inconclusive* when "
             "it contains the threshold.", ""]
    if not per_chapter:
        lines.append("No chapter has been executed yet: run `curvnb run` first.")
        return "\n".join(lines) + "\n"
    runs = sorted({(run.get("profile") or r["profile"], str(run.get("device", "?")), str(run.get("seed", "?")))
                   for _, run, records in per_chapter for r in records[:1]})
    lines += ["The verdicts rest on " + "; ".join(f"the {p} profile" + (f" on {d}, chapter seed {s}" if d != "?" else "")
                                                  for p, d, s in runs)
              + "." + (f" **Smoke runs are a {SMOKE_NOTE}.**" if any(p == "smoke" for p, _, _ in runs) else ""), ""]
    everything = [r for _, _, records in per_chapter for r in records]
    parts = [count_sentence(everything, k) for k in KINDS]
    if parts[0]:   # bold "k of n paper claims reproduced"
        head, sep, tail = parts[0].partition(" paper claims reproduced")
        parts[0] = f"**{head}{sep}**{tail}"
    lines += [f"Across {len(per_chapter)} chapters: " + "; ".join(p for p in parts if p) + ".", ""]
    head = "".join(f'<th style="{_CELL_STYLE}">{h}</th>' for h in ("chapter", "paper claims", "self-checks",
                                                                   "findings"))
    rows = []
    for name, run, records in per_chapter:
        title = html.escape(chapter_titles.get(name, name))
        link = f'<a href="{chapter_pages[name]}.html">{title}</a>' if name in chapter_pages else title
        if name in warnings:
            link += ' <b style="color:#D55E00">(stale: latest run failed)</b>'
        profiles = ", ".join(sorted({r["profile"] for r in records}))
        link += f"<br><span {_MUTED}>{html.escape(profiles)} profile</span>" if profiles else ""
        cells = (link, *(_cell(records, k) for k in KINDS))
        labels = ("", *(KIND_NAMES[k] for k in KINDS))   # shown above each cell on a phone (no header row)
        rows.append("<tr>" + "".join(f'<td style="{_CELL_STYLE}"{data_label(lab)}>{c}</td>'
                                     for c, lab in zip(cells, labels)) + "</tr>")
    lines += [f'<table class="curvnb-scorecard" style="{_TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
              f"<tbody>{''.join(rows)}</tbody></table>", ""]

    def section(name: str, run: dict, records: list[dict[str, Any]], level: str) -> list[str]:
        out = ["", f"{level} {chapter_titles.get(name, name)}", ""]
        if name in warnings:
            out += [":::{warning}", warnings[name], ":::", ""]
        if run:
            out += [f"Run: {run.get('profile', '?')} profile, seed {run.get('seed', '?')}, "
                    f"{run.get('device', '?')}, torch {run.get('torch', '?')}, {run.get('date', '?')}.", ""]
        swept = (pooled or {}).get((run.get("profile", ""), name), {}) if run else {}
        return out + [scorecard_rows_html(records, chapter_pages.get(name), swept), ""]

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
                  "before running, answered *yes*, *no* or *inconclusive* by the same rule. They are not "
                  "claims of any paper."]
        for name, run, findings in with_findings:
            lines += section(name, run, findings, "###")
    return "\n".join(lines) + "\n"
