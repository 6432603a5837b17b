"""The book's seed-robustness page, generated from every claims file of ``curvnb sweep``.

Per profile and chapter, and per claim: the verdict of each chapter seed (seed 0 is the book's own
run when its profile matches), the spread of its tested statistic over the seeds (a dot per seed),
the pooled verdict on the units of every chapter seed (:mod:`curvnb.claims.pooling`, the engine's
unchanged rule) with a plot of its interval narrowing as chapter seeds are added, or why its units
are not pooled; and the devices, torch versions and source versions of the runs.
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from curvnb.claims import COLOURS, KINDS, format_value, record_verdict, verdict
from curvnb.claims.pooling import Run, pool_claim, shared_unit_values, why_not_pooled
from curvnb.claims.report import data_label
from curvnb.config import SMOKE_NOTE

PAGE = "seed_robustness"   # book/seed_robustness.md in the staged book
TITLE = "Seed robustness"
_CELL = "vertical-align:top;padding:4px 6px;border-bottom:1px solid #ddd;text-align:left"
_TABLE = ("width:100%;table-layout:fixed;border-collapse:collapse;font-size:0.9em;"
          "overflow-wrap:anywhere;word-break:normal")
_COLUMNS = (("claim", "30%"), ("verdict per chapter seed", "24%"), ("pooled over chapter seeds", "26%"),
            ("interval as seeds are added", "20%"))
_FAIL = "#b42318"


def tested_statistic(record: dict[str, Any]) -> tuple[str, float] | None:
    """``(name, value)`` of a record's tested statistic: ``measured`` when it is a number, else the
    first finite number among its entries (named by its key); ``None`` when there is none."""
    value = record.get("measured")

    def number(v: Any) -> float | None:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None
        return float(v) if math.isfinite(float(v)) else None

    if number(value) is not None:
        return "measured", number(value)
    if isinstance(value, dict):
        for key, v in value.items():
            if number(v) is not None:
                return str(key), number(v)
    return None


#: How a seed's dot is drawn by its verdict: filled, hollow, or hollow and dashed (told apart without colour).
DOT_STYLES = {"reproduced": 'fill="{c}"', "not reproduced": 'fill="none" stroke="{c}" stroke-width="1.5"',
              "inconclusive": 'fill="none" stroke="{c}" stroke-width="1.5" stroke-dasharray="2,1.5"'}


def dot_plot_svg(values: Sequence[float], verdicts: Sequence[str], seeds: Sequence[int],
                 words: Sequence[str] | None = None, width: int = 150, height: int = 22) -> str:
    """One dot per seed on a shared axis (log scale when the values are positive and span more than
    two decades), drawn by the seed's verdict (the engine's three: :data:`DOT_STYLES`, in the
    verdict colours), each dot's tooltip the value and ``words`` (the reader's verdict words; the
    engine's by default). Inline SVG."""
    x = np.asarray(values, dtype=float)
    log = bool(np.all(x > 0) and x.max() / x.min() > 100)
    t = np.log10(x) if log else x
    lo, hi = float(t.min()), float(t.max())
    pad = 8
    pos = np.full(t.shape, width / 2) if hi == lo else pad + (t - lo) / (hi - lo) * (width - 2 * pad)
    dots = []
    for p, v_, s, v, w in zip(pos, verdicts, seeds, x, words or verdicts):
        tip = f"seed {s}: {format_value(float(v))} ({w})"
        style = DOT_STYLES[v_].format(c=COLOURS[v_])
        dots.append(f'<circle cx="{p:.1f}" cy="{height / 2:.1f}" r="4" {style}><title>{html.escape(tip)}</title></circle>')
    axis = f'<line x1="{pad}" y1="{height - 3}" x2="{width - pad}" y2="{height - 3}" stroke="#999" stroke-width="1"/>'
    label = "log scale" if log else "linear scale"
    # Scales down with its column (the viewBox keeps the dots round); never wider than `width`.
    return (f'<svg class="curvnb-dots" viewBox="0 0 {width} {height}" style="width:100%;max-width:{width}px;'
            f'height:auto" role="img" aria-label="one dot per seed, {label}">{axis}{"".join(dots)}</svg>'
            f'<br><span style="color:#555;font-size:0.85em">{label}</span>')


def narrowing_svg(steps: Sequence[dict[str, Any]], threshold: float, delta: float | None,
                  width: int = 150, height: int = 64) -> str:
    """The pooled 95 % interval after 1, 2, … chapter seeds (one bar each, coloured by its verdict)
    against the claim's threshold (a dashed line; its band ± delta shaded). Inline SVG."""
    bounds = [threshold] + ([threshold - delta, threshold + delta] if delta else [])
    ends = [v for st in steps if st["interval"] for v in st["interval"]] + [st["estimate"] for st in steps] + bounds
    lo, hi = min(ends), max(ends)
    pad = 0.08 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    y = lambda v: 6 + (hi - v) / (hi - lo) * (height - 18)  # noqa: E731
    step = (width - 16) / max(len(steps), 1)
    parts = []
    if delta:
        parts.append(f'<rect x="4" y="{y(threshold + delta):.1f}" width="{width - 8}" '
                     f'height="{y(threshold - delta) - y(threshold + delta):.1f}" fill="#eee"/>')
    parts.append(f'<line x1="4" x2="{width - 4}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                 'stroke="#777" stroke-dasharray="3,2"/>')
    for i, st in enumerate(steps):
        x, colour = 8 + step * (i + 0.5), COLOURS[st["verdict"]]
        tip = html.escape(f"{st['chapter_seeds']} chapter seed(s), {st['n_units']} units: {st['verdict']}")
        if st["interval"]:
            a, b = st["interval"]
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(b):.1f}" y2="{y(a):.1f}" stroke="{colour}" '
                         f'stroke-width="3"><title>{tip}</title></line>')
        parts.append(f'<circle cx="{x:.1f}" cy="{y(st["estimate"]):.1f}" r="2.5" fill="{colour}"><title>{tip}</title></circle>')
        parts.append(f'<text x="{x:.1f}" y="{height - 1}" font-size="10" text-anchor="middle" fill="#333">'
                     f'{st["chapter_seeds"]}</text>')
    return (f'<svg class="curvnb-narrowing" viewBox="0 0 {width} {height}" style="width:100%;max-width:{width}px;'
            f'height:auto" role="img" aria-label="pooled interval after each added chapter seed">{"".join(parts)}</svg>'
            '<br><span style="color:#555;font-size:0.85em">chapter seeds pooled (dashed: threshold)</span>')


def _per_seed_cell(records_by_seed: dict[int, dict[str, Any]]) -> str:
    """Each chapter seed's verdict, then the spread of the tested statistic (a dot per seed)."""
    seeds = sorted(records_by_seed)
    lines = []
    for s in seeds:
        r = records_by_seed[s]
        v = record_verdict(r)
        lines.append(f'seed {s}: <b style="color:{COLOURS[v]}">{html.escape(verdict(r))}</b>')
    stats = [tested_statistic(records_by_seed[s]) for s in seeds]
    named = [(s, st) for s, st in zip(seeds, stats) if st is not None]
    cell = "<br>".join(lines)
    if len(named) > 1:
        values = np.array([st[1] for _, st in named])
        shown = [records_by_seed[s] for s, _ in named]
        cell += "<br>" + dot_plot_svg(values, [record_verdict(r) for r in shown], [s for s, _ in named],
                                      [verdict(r) for r in shown])
    return cell


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return format_value(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def selection_note(records_by_seed: dict[int, dict[str, Any]]) -> str:
    """Where a claim's units ran at a rate each chapter seed chose on its own selection seeds (its
    records' detail has entries marked "(selected)"): what each seed chose, and that the pooled
    units are taken as they are. ``""`` for claims without such a choice."""
    chosen = {}
    for seed in sorted(records_by_seed):
        detail = records_by_seed[seed].get("detail") or {}
        picked = {k.replace(" (selected)", ""): v for k, v in detail.items() if "(selected)" in k}
        if picked:
            chosen[seed] = "; ".join(f"{k}: {_plain(v)}" for k, v in picked.items())
    if not chosen:
        return ""
    each = " — ".join(f"seed {s}: {html.escape(text)}" for s, text in chosen.items())
    return ('<br><span style="color:#555;font-size:0.9em">Its units ran at rates each chapter seed chose by the '
            f"same fixed rule on selection seeds of its own ({each}); pooled as they are.</span>")


def _pooled_cells(runs: Sequence[Run], claim_id: str, pooled: dict[str, Any] | None,
                  note: str = "") -> tuple[str, str]:
    """The pooled verdict with its units and interval (``pooled``, from :func:`pooled_verdicts`), or
    why the units are not pooled, then ``note``; and the narrowing plot."""
    if pooled is None:
        return (f'<span style="color:#555">not pooled: {html.escape(why_not_pooled(runs, claim_id))}</span>'
                + note, "")
    v, info = pooled["verdict"], pooled["pooled"]
    interval = pooled["interval"]
    unit = pooled.get("unit", "unit")
    text = (f'<b style="color:{COLOURS[v]}">{html.escape(verdict(pooled))}</b> — {pooled["n_units"]} {unit}s, '
            f'{len(info["chapter_seeds"])} chapter seeds<br><span style="color:#555">estimate '
            f'{format_value(pooled["estimate"])}'
            + (f", 95 % interval [{format_value(interval[0])}, {format_value(interval[1])}]" if interval else
               f", no interval ({html.escape(pooled.get('reason') or 'too few units')})")
            + f'; rule {html.escape(str(pooled["threshold"]))}</span>')
    for seed, reason in info.get("left_out", []):
        text += f'<br><span style="color:#555;font-size:0.9em">seed {seed} left out: {html.escape(reason)}</span>'
    return text + note, narrowing_svg(info["narrowing"], pooled["threshold_value"], pooled.get("delta"))


def with_book_runs(results: Sequence[tuple[Any, dict[str, Any], list[dict[str, Any]]]],
                   book_runs: Sequence[tuple[Any, dict[str, Any], list[dict[str, Any]]]]) -> list:
    """``results`` plus the book's own runs as chapter seed 0 of their profile, where a sweep of that
    profile and chapter exists and has no seed 0 of its own."""
    have = {(t.profile, t.chapter, t.seed) for t, _, _ in results}
    swept = {(t.profile, t.chapter) for t, _, _ in results}
    extra = [(t, run, recs) for t, run, recs in book_runs
             if (t.profile, t.chapter) in swept and (t.profile, t.chapter, t.seed) not in have]
    return sorted([*results, *extra], key=lambda item: (item[0].profile, item[0].chapter, item[0].seed))


def _disjointness_note(runs: Sequence[Run]) -> str:
    """Whether any per-unit value of one chapter seed appears among another's for the same claim
    (:func:`curvnb.claims.pooling.shared_unit_values`): two chapter seeds that ran the same unit."""
    if len(runs) < 2:
        return "One chapter seed: no units to compare."
    shared = shared_unit_values(runs)
    if not shared:
        return ("Checked: no unit of one chapter seed (its values, a pair for a paired claim) appears among "
                "another's for the same claim, as independent units should (discrete measurements, where equal "
                "values are expected — counts, accuracies on a finite test set, 0/1 outcomes, rank correlations of "
                "a few points — and constants "
                "of the configuration aside).")

    def unit(u: tuple) -> str:
        shown = [format_value(v) if isinstance(v, float) else str(v) for v in u]
        return shown[0] if len(shown) == 1 else "(" + ", ".join(shown) + ")"

    items = "; ".join(f"{html.escape(s['claim'])} (seeds {s['seeds'][0]} and {s['seeds'][1]}: "
                      f"{html.escape(', '.join(unit(u) for u in s['values'][:3]))})" for s in shared[:5])
    claims = len({s["claim"] for s in shared})
    return (f'<b style="color:{_FAIL}">{claims} claim(s) share units across chapter seeds</b> — '
            f"their units may not be independent: {items}{' …' if len(shared) > 5 else ''}.")


def pooled_verdicts(results: Sequence[tuple[Any, dict[str, Any], list[dict[str, Any]]]]
                    ) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """``(profile, chapter) -> {claim id: pooled record}`` for every claim whose units pool over
    two or more chapter seeds (the scorecard shows them beside the book's own verdicts)."""
    grouped: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for task, run, records in results:
        grouped[task.profile, task.chapter].append(Run(task.seed, run, records))
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for key, runs in grouped.items():
        ids = {r["id"] for run in runs for r in run.records}
        out[key] = {cid: pool_claim(runs, cid) for cid in sorted(ids) if why_not_pooled(runs, cid) is None}
    return out


def robustness_markdown(results: Sequence[tuple[Any, dict[str, Any], list[dict[str, Any]]]],
                        chapter_titles: dict[str, str] | None = None,
                        chapter_pages: dict[str, str] | None = None,
                        pooled: dict[tuple[str, str], dict[str, dict[str, Any]]] | None = None) -> str:
    """The page, from :func:`curvnb.sweep.sweep_results` (``(task, run, records)`` per stored run).

    ``chapter_titles`` gives the book's order and titles; ``chapter_pages`` the page names to link;
    ``pooled``: :func:`pooled_verdicts` of ``results`` when the caller has it (computed otherwise)."""
    titles, pages = chapter_titles or {}, chapter_pages or {}
    pooled = pooled_verdicts(results) if pooled is None else pooled
    lines = [f"# {TITLE}", "",
             "Each chapter of the book shows one run (chapter seed 0 unless stated). `curvnb sweep` reruns "
             "the chapters with other chapter seeds, each drawing its own independent units (networks, "
             "data orders, probes: no two chapter seeds share one), and checks the same claims — the "
             "book's restatements of the papers' statements, as on the [scorecard](scorecard.md). This page "
             "is generated from the claims of every run of the sweep "
             "and, as chapter seed 0, the book's own run where its profile matches. For each claim it gives "
             "the verdict of each chapter seed, with one dot per seed for its tested statistic (filled: "
             "reproduced; hollow: not reproduced; dashed: inconclusive; hover for the value); then the **pooled verdict**: the units of every "
             "chapter seed taken together and decided by the same pre-registered rule, the interval "
             "narrowing as chapter seeds are added. Units are pooled only when they are exchangeable — "
             "the same profile, configuration, units code and claim definition — and the page says "
             "why where they are not (a run left out of a pool is named). Deterministic claims are reported per seed, never pooled. A claim "
             "whose units rest on a per-seed choice (a learning rate picked by a fixed rule on selection "
             "seeds) pools them as they are, and its row says what each seed chose. Units are pooled "
             "when the runs share the chapter's units code (its compute code): prose, figures and the "
             "wording of claims may differ; the claim's rule must not. The number of chapter seeds was fixed before the sweep; the pooled "
             "verdict is what those units say.", ""]
    if not results:
        lines += ["No sweep results yet. To produce them, run for example", "",
                  "```bash", "curvnb sweep intro toolkit --num-seeds 3   # a process pool here",
                  "curvnb sweep --num-seeds 3 --engine ray     # a local Ray cluster",
                  "curvnb sweep --profile full --device cuda --num-seeds 5 \\",
                  "    --engine ray --address auto --gpus-per-task 1   # a Ray cluster with GPUs",
                  "curvnb build", "```", ""]
        return "\n".join(lines) + "\n"
    order = {name: i for i, name in enumerate(titles)}
    grouped: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for task, run, records in results:
        grouped[task.profile][task.chapter].append((task.seed, run, records))
    for profile in sorted(grouped, key=lambda p: (p != "quick", p)):
        lines += [f"## {profile.capitalize()} profile", ""]
        if profile == "smoke":
            lines += [SMOKE_NOTE, ""]
        for chapter in sorted(grouped[profile], key=lambda c: (order.get(c, len(order)), c)):
            runs = sorted(grouped[profile][chapter], key=lambda item: item[0])
            title = titles.get(chapter, chapter)
            link = f" [Open the chapter]({pages[chapter]}.ipynb)." if chapter in pages else ""
            seeds = [s for s, _, _ in runs]
            devices = sorted({str(run.get("device", "?")) for _, run, _ in runs})
            torches = sorted({str(run.get("torch", "?")) for _, run, _ in runs})
            sources = {run.get("units_sha256") or run.get("sources_sha256") for _, run, _ in runs}
            lines += [f"### {title}", "",
                      f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}; device(s): {', '.join(devices)}; "
                      f"torch {', '.join(torches)}; profile {profile}."
                      + (f" The runs used {len(sources)} different versions of the chapter's units code (its "
                         "compute code)." if len(sources) > 1 else
                         " All runs used the same units code (the chapter's compute code).") + link, ""]
            lines += [_disjointness_note([Run(seed, run, records) for seed, run, records in runs]), ""]
            by_claim: dict[str, dict[int, dict]] = defaultdict(dict)
            for seed, _, records in runs:
                for r in records:
                    by_claim[r["id"]][seed] = r
            rows = []
            def kind_rank(item: tuple[str, dict[int, dict]]) -> int:   # paper claims first
                kind = next(iter(item[1].values())).get("kind", "paper")
                return KINDS.index(kind) if kind in KINDS else len(KINDS)

            pool_runs = [Run(seed, run, records) for seed, run, records in runs]
            for cid, per_seed in sorted(by_claim.items(), key=kind_rank):
                first = per_seed[min(per_seed)]
                kind = {"check": " (self-check)", "finding": " (finding)"}.get(first.get("kind", "paper"), "")
                source = (f'<br><span style="color:#555;font-size:0.9em">Source: {html.escape(first["source"])}</span>'
                          if first.get("source") else "")
                claim = f"<b>{html.escape(str(cid))}</b>{kind}: {html.escape(str(first['statement']))}{source}"
                cells = (claim, _per_seed_cell(per_seed),
                         *_pooled_cells(pool_runs, cid, pooled.get((profile, chapter), {}).get(cid),
                                        selection_note(per_seed)))
                rows.append("<tr>" + "".join(f'<td style="{_CELL}"{data_label(h if i else "")}>{c}</td>'
                                             for i, (c, (h, _)) in enumerate(zip(cells, _COLUMNS))) + "</tr>")
            head = "".join(f'<th style="{_CELL};width:{w}">{h}</th>' for h, w in _COLUMNS)
            lines += [f'<table class="curvnb-robustness" style="{_TABLE}"><thead><tr>{head}</tr></thead>'
                      f"<tbody>{''.join(rows)}</tbody></table>", ""]
    return "\n".join(lines) + "\n"
