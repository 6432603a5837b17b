"""Benchmark results: measured per-round times written to ``benchmarks/results/<name>.json`` and
rendered to ``benchmarks/results/<name>.md`` (which the book's Performance page includes).

Nothing in the rendered page is typed by hand: every number comes from the JSON file, which holds
the raw per-round times, so a ratio is always the median of per-round ratios of two methods timed
round-robin in the same process, with its spread (interquartile range over rounds).

Re-render without re-measuring: ``.venv/bin/python benchmarks/results.py``.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def round_robin(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1,
                seed: int = 0) -> dict[str, list[float]]:
    """Per-round wall times (s) of each function; every round runs all of them once, so a load
    change on a shared machine hits all alike, in an order shuffled each round (seeded), so that no
    method always runs right after the same one (caches and allocator state left by the previous
    call would otherwise bias one ratio the same way in every round). ``warmup`` untimed calls each first."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order, rng = list(fns), random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def run_info(argv: list[str] | None = None) -> dict[str, Any]:
    """Where and when: date, versions, threads, machine, load average."""
    import torch

    try:
        import curvnb
        version = getattr(curvnb, "__version__", "")
    except ImportError:  # pragma: no cover
        version = ""
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch": torch.__version__, "curvnb": version, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "load_average_start": list(os.getloadavg()), "command": " ".join(argv or sys.argv)}


def ratio_stats(times: list[float], ref: list[float]) -> dict[str, float]:
    """Median time and the median and interquartile range of the per-round ratios ``times / ref``."""
    r = np.asarray(times) / np.asarray(ref)
    return {"median_ms": 1e3 * statistics.median(times), "ratio": float(np.median(r)),
            "ratio_q25": float(np.quantile(r, 0.25)), "ratio_q75": float(np.quantile(r, 0.75)), "rounds": len(r)}


def write(name: str, info: dict[str, Any], rows: list[dict[str, Any]], targets: list[dict[str, Any]],
          notes: list[str] | None = None) -> Path:
    """Write ``results/<name>.json`` and render ``results/<name>.md``; returns the JSON path."""
    RESULTS.mkdir(exist_ok=True)
    info = dict(info, load_average_end=list(os.getloadavg()))
    data = {"benchmark": name, "run": info, "rows": rows, "targets": targets, "notes": notes or []}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    (RESULTS / f"{name}.md").write_text(render(data))
    return path


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def row_stats(row: dict[str, Any]) -> dict[str, float] | None:
    if not row.get("times"):
        return None
    return ratio_stats(row["times"], row["ref_times"] if row.get("ref_times") else row["times"])


def render(data: dict[str, Any]) -> str:
    """Markdown tables of one results file: run line, one table per section, then the targets."""
    run = data["run"]
    load = f"{run['load_average_start'][0]:.1f} → {run['load_average_end'][0]:.1f}"
    out = [f"*Measured {run['date'][:10]} ({run['date']}) with torch {run['torch']} on {run['threads']} thread(s), "
           f"{run['machine']}; load average (1 min) {load} during the run. Command: `{run['command']}`. "
           "Ratios are medians of per-round ratios (methods timed round-robin in one process, in an order shuffled "
           "each round); the spread is "
           "their interquartile range over the rounds.*", ""]
    for note in data.get("notes", []):
        out += [note, ""]
    sections: dict[str, list[dict]] = {}
    for row in data["rows"]:
        sections.setdefault(row["section"], []).append(row)
    for section, rows in sections.items():
        out += [f"**{section}**", "", "| model | measurement | time (ms) | ratio | spread (IQR) | rounds | details |",
                "|---|---|---:|---:|---|---:|---|"]
        for row in rows:
            st = row_stats(row)
            details = "; ".join(f"{k} {_fmt(v) if isinstance(v, float) else v}" for k, v in row.get("info", {}).items())
            if st is None:
                out.append(f"| {row['model']} | {row['label']} | | | | | {details} |")
                continue
            ref = f" ÷ {row['ref']}" if row.get("ref") else ""
            out.append(f"| {row['model']} | {row['label']} | {_fmt(st['median_ms'])} | {st['ratio']:.2f}{ref} | "
                       f"{st['ratio_q25']:.2f}–{st['ratio_q75']:.2f} | {st['rounds']} | {details} |")
        out.append("")
    if data.get("targets"):
        out += ["**Targets** (met: the median of the per-round ratios is within the threshold; where the "
                "interquartile range of those ratios straddles the threshold, the verdict is within the "
                "round-to-round noise and says so)", "",
                "| target | measured | spread (IQR) | threshold | met |", "|---|---:|---|---:|---|"]
        for t in data["targets"]:
            op = t.get("op", "<=")
            ok = (lambda x: x <= t["threshold"]) if op == "<=" else (lambda x: x >= t["threshold"])
            met = "yes" if ok(t["value"]) else "**no**"
            spread = ""
            if t.get("spread"):
                spread = f"{t['spread'][0]:.2f}–{t['spread'][1]:.2f}"
                if ok(t["spread"][0]) != ok(t["spread"][1]):
                    met += " (within noise)"
            out.append(f"| {t['name']} | {t['value']:.2f} | {spread} | {op} {t['threshold']:g} | {met} |")
        out.append("")
    return "\n".join(out)


def find(rows: list[dict[str, Any]], model: str, label_start: str) -> dict[str, Any]:
    """The row of ``model`` whose label starts with ``label_start``."""
    for row in rows:
        if row["model"] == model and row["label"].startswith(label_start):
            return row
    raise KeyError((model, label_start))


def target(name: str, a: dict[str, Any], b: dict[str, Any] | None, threshold: float) -> dict[str, Any]:
    """A target on the per-round ratios a/b of two rows timed in the same round-robin group (b: the
    row's own reference): their median as the value, their interquartile range as the spread."""
    st = ratio_stats(a["times"], b["times"] if b is not None else a["ref_times"])
    return {"name": name, "value": st["ratio"], "spread": [st["ratio_q25"], st["ratio_q75"]], "threshold": threshold}


if __name__ == "__main__":
    for path in sorted(RESULTS.glob("*.json")):
        (RESULTS / f"{path.stem}.md").write_text(render(json.loads(path.read_text())))
        print(f"rendered {path.stem}.md")
