"""The book's seed-robustness page, generated from every claims file of ``curvnb sweep``.

Per profile and chapter, and per claim: in how many seeds it reproduced (with an exact 95 %
interval of that rate), the spread of its tested statistic over the seeds (min, median, max and a
dot per seed), and the devices, torch versions and source versions of the runs.
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from curvnb.claims import KINDS, VERDICTS, format_value
from curvnb.config import SMOKE_NOTE

PAGE = "seed_robustness"   # book/seed_robustness.md in the staged book
TITLE = "Seed robustness"
_CELL = "vertical-align:top;padding:4px 6px;border-bottom:1px solid #ddd;text-align:left"
_TABLE = ("width:100%;table-layout:fixed;border-collapse:collapse;font-size:0.9em;"
          "overflow-wrap:anywhere;word-break:normal")
_COLUMNS = (("claim", "34%"), ("result over seeds", "22%"), ("tested statistic: min · median · max", "24%"),
            ("per seed", "20%"))
_PASS, _FAIL = "#1a7f37", "#b42318"


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


def dot_plot_svg(values: Sequence[float], passed: Sequence[bool], seeds: Sequence[int],
                 width: int = 150, height: int = 22) -> str:
    """One dot per seed on a shared axis (log scale when the values are positive and span more than
    two decades): filled green where the claim held, hollow red where it did not. Inline SVG."""
    x = np.asarray(values, dtype=float)
    log = bool(np.all(x > 0) and x.max() / x.min() > 100)
    t = np.log10(x) if log else x
    lo, hi = float(t.min()), float(t.max())
    pad = 8
    pos = np.full(t.shape, width / 2) if hi == lo else pad + (t - lo) / (hi - lo) * (width - 2 * pad)
    dots = []
    for p, ok, s, v in zip(pos, passed, seeds, x):
        tip = f"seed {s}: {format_value(float(v))} ({'holds' if ok else 'fails'})"
        style = f'fill="{_PASS}"' if ok else f'fill="none" stroke="{_FAIL}" stroke-width="1.5"'
        dots.append(f'<circle cx="{p:.1f}" cy="{height / 2:.1f}" r="4" {style}><title>{html.escape(tip)}</title></circle>')
    axis = f'<line x1="{pad}" y1="{height - 3}" x2="{width - pad}" y2="{height - 3}" stroke="#999" stroke-width="1"/>'
    label = "log scale" if log else "linear scale"
    # Scales down with its column (the viewBox keeps the dots round); never wider than `width`.
    return (f'<svg class="curvnb-dots" viewBox="0 0 {width} {height}" style="width:100%;max-width:{width}px;'
            f'height:auto" role="img" aria-label="one dot per seed, {label}">{axis}{"".join(dots)}</svg>'
            f'<br><span style="color:#555;font-size:0.85em">{label}</span>')


def _summarise(records_by_seed: dict[int, dict[str, Any]]) -> tuple[str, str, str]:
    """Cells of one claim's row: result over seeds, statistic spread, dot plot."""
    from curvnb.stats import clopper_pearson

    seeds = sorted(records_by_seed)
    records = [records_by_seed[s] for s in seeds]
    kind = records[0].get("kind", "paper")
    word = VERDICTS.get(kind, VERDICTS["paper"])[0]
    k, n = sum(bool(r["passed"]) for r in records), len(records)
    lo, hi = clopper_pearson(k, n)
    colour = _PASS if k == n else _FAIL
    result = (f'<b style="color:{colour}">{word} in {k} of {n} seeds</b>'
              f'<br><span style="color:#555">95 % interval of the rate: [{lo:.2f}, {hi:.2f}]</span>')
    within = sorted({int(r.get("seeds", 1)) for r in records})
    if within != [1]:
        result += (f'<br><span style="color:#555">each run pools {"/".join(map(str, within))} '
                   "seeds of its own</span>")
    stats = [tested_statistic(r) for r in records]
    named = [(s, st) for s, st in zip(seeds, stats) if st is not None]
    if not named:
        return result, "no numeric statistic", ""
    names = list(dict.fromkeys(st[0] for _, st in named))
    values = np.array([st[1] for _, st in named])
    spread = (f"{html.escape(', '.join(n.replace('_', ' ') for n in names))}:<br>"
              f"{format_value(float(values.min()))} · {format_value(float(np.median(values)))} · "
              f"{format_value(float(values.max()))}")
    ok = [bool(records_by_seed[s]["passed"]) for s, _ in named]
    return result, spread, dot_plot_svg(values, ok, [s for s, _ in named])


def robustness_markdown(results: Sequence[tuple[Any, dict[str, Any], list[dict[str, Any]]]],
                        chapter_titles: dict[str, str] | None = None,
                        chapter_pages: dict[str, str] | None = None) -> str:
    """The page, from :func:`curvnb.sweep.sweep_results` (``(task, run, records)`` per stored run).

    ``chapter_titles`` gives the book's order and titles; ``chapter_pages`` the page names to link."""
    titles, pages = chapter_titles or {}, chapter_pages or {}
    lines = [f"# {TITLE}", "",
             "Each chapter of the book shows one run (seed 0 unless stated). `curvnb sweep` reruns the "
             "chapters with other seeds (and profiles), each seed an independent run, and checks the "
             "same claims — the book's restatements of the papers' statements, as on the "
             "[scorecard](scorecard.md). This page is generated from every claims file "
             "of those runs (`_build/sweeps/<profile>/<chapter>/seed-<n>/`). For each claim it gives "
             "in how many seeds it held, with an exact (Clopper–Pearson) 95 % interval of that rate, "
             "and the spread of its tested statistic over the seeds — the first number of its "
             "measurement, named in the table — as minimum, median and maximum, with one dot per "
             "seed (filled: held; hollow: did not; hover for the value). A claim that already pools "
             "several seeds within one run is shown with that number: here its pooled statistic is "
             "repeated over independent runs.", ""]
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
            sources = {run.get("sources_sha256") for _, run, _ in runs}
            lines += [f"### {title}", "",
                      f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}; device(s): {', '.join(devices)}; "
                      f"torch {', '.join(torches)}; profile {profile}."
                      + (f" The runs used {len(sources)} different versions of the curvnb sources."
                         if len(sources) > 1 else " All runs used the same curvnb sources.") + link, ""]
            by_claim: dict[str, dict[int, dict]] = defaultdict(dict)
            for seed, _, records in runs:
                for r in records:
                    by_claim[r["id"]][seed] = r
            rows = []
            def kind_rank(item: tuple[str, dict[int, dict]]) -> int:   # paper claims first
                kind = next(iter(item[1].values())).get("kind", "paper")
                return KINDS.index(kind) if kind in KINDS else len(KINDS)

            for cid, per_seed in sorted(by_claim.items(), key=kind_rank):
                first = per_seed[min(per_seed)]
                kind = {"check": " (self-check)", "finding": " (finding)"}.get(first.get("kind", "paper"), "")
                source = (f'<br><span style="color:#555;font-size:0.9em">Source: {html.escape(first["source"])}</span>'
                          if first.get("source") else "")
                claim = f"<b>{html.escape(str(cid))}</b>{kind}: {html.escape(str(first['statement']))}{source}"
                cells = (claim, *_summarise(per_seed))
                rows.append("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells) + "</tr>")
            head = "".join(f'<th style="{_CELL};width:{w}">{h}</th>' for h, w in _COLUMNS)
            lines += [f'<table class="curvnb-robustness" style="{_TABLE}"><thead><tr>{head}</tr></thead>'
                      f"<tbody>{''.join(rows)}</tbody></table>", ""]
    return "\n".join(lines) + "\n"
