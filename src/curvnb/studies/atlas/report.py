"""The report of the atlas chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.atlas.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import html
import math
from typing import Sequence

import numpy as np

from curvnb.claims import Claim
from curvnb.figures import panels
from curvnb.stats import bootstrap_interval, median_ratio
from curvnb.studies.atlas.compute import Config, LENSES, REVERSIBLE, RUNS, TUNED, grid


NAMES = {"sgd-small": "SGD (small lr)", "sgd-large": "SGD (large lr)", "sgd-mom": "SGD-momentum",
         "adam": "Adam", "adam-small": "Adam (lr ÷ 10)", "kfac-half": "K-FAC α=½", "kfac-1": "K-FAC α=1",
         "alice": "Alice", "gn": "exact GN (rev)", "rev-sgd": "SGD (rev)", "rev-adam": "Adam (rev)"}
COLORS = {"sgd-small": "#56B4E9", "sgd-large": "#0072B2", "sgd-mom": "#009E73", "adam": "#E69F00",
          "adam-small": "#F0E442", "kfac-half": "#CC79A7", "kfac-1": "#D55E00", "alice": "#000000",
          "gn": "#D55E00", "rev-sgd": "#0072B2", "rev-adam": "#E69F00"}
FINDINGS = ("kfac-lazy", "gn-lazy", "break-even-sgd", "break-even-adam", "alice-glass", "kfac-first")


def at_budget(results: dict) -> dict[str, dict[str, list[float]]]:
    """Per run, every lens at its last probe: the equal-gradient-evaluations comparison."""
    return {name: {key: [float(r[key][-1]) for r in rs] for key in (*LENSES, "evals", "train_seconds")}
            for name, rs in results["runs"].items()}


def median_interval(values: Sequence[float], resamples: int = 1000) -> tuple[float, tuple[float, float]]:
    """Median over seeds and its 95 % bootstrap interval (the tables' cells)."""
    v = np.asarray(values, float)
    return float(np.median(v)), bootstrap_interval(v, resamples=resamples)


def ratio_of_medians(a: Sequence[float], b: Sequence[float]) -> tuple[float, tuple[float, float]]:
    """median(a) / median(b) over seeds, with a 95 % bootstrap interval (seeds resampled jointly)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return median_ratio(a, b), bootstrap_interval((a, b), median_ratio)


# --------------------------------------------------------------------------- findings
#: (id, run a, run b, statistic key, question as a statement, chapters it speaks to)
FINDING_SPECS = (
    ("kfac-lazy", "kfac-1", "adam", "ntk",
     "On the MLP, K-FAC at α = 1 has moved the NTK less than Adam at matched training loss",
     ("03_huh2020", "07_buffelli2024")),
    ("gn-lazy", "gn", "rev-adam", "ntk",
     "On the reversible net, exact Gauss–Newton has moved the NTK less than Adam at matched training loss",
     ("07_buffelli2024",)),
    ("break-even-sgd", "sgd-large", "sgd-small", "lam_k",
     "At matched training loss, SGD at the large learning rate sits at a lower λ_K¹ than SGD at the small rate",
     ("05_jastrzebski2020",)),
    ("break-even-adam", "adam", "adam-small", "lam_k",
     "At matched training loss, Adam at its selected rate sits at a lower λ_K¹ than Adam at a tenth of it",
     ("05_jastrzebski2020",)),
    ("alice-glass", "alice", "adam", "rho",
     "At matched training loss, Alice sits at a lower glass density than Adam", ("06_duersch2024",)),
    ("kfac-first", "kfac-1", "sgd-mom", "evals",
     "K-FAC at α = 1 reaches the target training loss in fewer gradient evaluations than SGD-momentum",
     ("03_huh2020", "04_orvieto2021")),
)
THRESHOLD = 1.0   # every finding: ratio of medians, yes iff its whole 95 % interval is below 1


def finding_values(results: dict) -> dict[str, dict]:
    """Each finding's ratio of medians and interval, with the per-seed values it came from."""
    values = results["matched"]["values"]
    out = {}
    for fid, a, b, key, _statement, _links in FINDING_SPECS:
        va, vb = values[a][key], values[b][key]
        ratio, interval = ratio_of_medians(va, vb)
        if not all(np.isfinite(interval)):   # undefined (e.g. 0/0): no answer, the widest interval
            interval = (-math.inf, math.inf)
        out[fid] = {"ratio": ratio, "interval": interval, "a": va, "b": vb, "seeds": len(va),
                    "passed": bool(interval[1] < THRESHOLD)}
    return out


def claims(results: dict, config: Config) -> list[Claim]:
    """The chapter's findings (``kind="finding"``): statistic and threshold as pre-registered above."""
    fv = finding_values(results)
    out = []
    for fid, a, b, key, statement, _links in FINDING_SPECS:
        v = fv[fid]
        label = {"ntk": "NTK distance", "lam_k": "λ_K¹", "rho": "glass density ρ",
                 "evals": "gradient evaluations to target"}[key]
        out.append(Claim(fid, statement,
                         {f"{label}: median {NAMES[a]} / median {NAMES[b]}": v["ratio"],
                          f"per seed, {NAMES[a]}": v["a"], f"per seed, {NAMES[b]}": v["b"]},
                         "95 % interval of the ratio below 1", bool(v["interval"][1] < THRESHOLD),
                         kind="finding", seeds=v["seeds"], interval=v["interval"], source=""))
    return out


def _link(stem: str) -> str:
    label = {"03_huh2020": "Huh chapter", "04_orvieto2021": "Orvieto chapter", "05_jastrzebski2020": "Jastrzębski chapter",
             "06_duersch2024": "Duersch chapter", "07_buffelli2024": "Buffelli chapter"}[stem]
    return f"[the {label}]({stem}.ipynb)"


def study_verdict(chapter: str, claim_id: str) -> bool | None:
    """Whether claim ``claim_id`` passed in the latest run of study ``chapter`` (None: no record)."""
    from curvnb.claims import read_claims
    from curvnb.paths import build_dir

    path = build_dir() / "claims" / f"{chapter}.json"
    try:
        records = {r["id"]: r for r in read_claims(path)}
    except (OSError, ValueError):
        return None
    return bool(records[claim_id]["passed"]) if claim_id in records else None


def _compared_with_study(answer: bool, chapter: str, claim_id: str, setting: str) -> str:
    """``, as in …`` / ``, whereas …`` against the study chapter's own verdict on the same claim."""
    theirs = study_verdict(chapter, claim_id)
    if theirs is None:
        return ""
    return (f", {'as in' if theirs == answer else 'whereas'} the study chapter's own run ({setting}), "
            f"where the claim {'reproduced' if theirs else 'did not reproduce'}")


def kernel_scale_note(move_a: Sequence[float], move_b: Sequence[float], lazier: bool) -> str:
    """The laziness findings measure the NTK's change of direction (1 − cos); this sentence gives the
    same ratio for its relative change ‖K_t − K_0‖/‖K_0‖, which also sees a change of scale (a lens
    added after the findings were registered, so reported, not answered)."""
    ratio, (lo, hi) = ratio_of_medians(move_a, move_b)
    text = (f"By the relative change ‖K_t − K_0‖/‖K_0‖ instead (added after the findings were registered, "
            f"so not a finding) the ratio is {ratio:.3g} [{lo:.3g}, {hi:.3g}]")
    if lazier and lo > 1:
        return text + ": the kernel's direction moved less, but its size moved more."
    if lazier and hi < 1:
        return text + ": both measures agree."
    return text + "."


def summary_markdown(results: dict) -> str:
    """Every finding's answer, conditioned on the run's records, with links to the study chapters."""
    fv = finding_values(results)
    m = results["matched"]
    n = len(results["seeds"])
    lines = [f"Target training loss: {m['target']:.3g} (1.05 × the largest final training loss of all "
             f"{len(RUNS)} runs × {n} seeds). Each answer is a ratio of medians over {n} seeds with a 95 % "
             "bootstrap interval; *yes* means the whole interval lies below 1.", ""]
    for fid, a, b, key, statement, links in FINDING_SPECS:
        v = fv[fid]
        lo, hi = v["interval"]
        answer = "**yes**" if v["passed"] else "**no** (not established)"
        text = f"- *{statement}?* {answer}: ratio {v['ratio']:.3g} [{lo:.3g}, {hi:.3g}]."
        refs = " and ".join(_link(s) for s in links)
        if fid == "kfac-lazy":
            text += (f" K-FAC at α = 1 {'is' if v['passed'] else 'is not shown to be'} lazier than Adam here; "
                     f"Buffelli et al. report laziness for exact GN ({refs}).")
        elif fid == "gn-lazy":
            text += (f" Buffelli et al. report that exact GN trains lazily; here, on MNIST-1D at matched loss, "
                     f"{'it does' if v['passed'] else 'that is not established'}"
                     + _compared_with_study(v["passed"], "buffelli2024", "lazy", "digits, equal steps") + f" ({refs}).")
        elif fid == "break-even-sgd":
            text += (f" A larger SGD step {'leaves' if v['passed'] else 'does not leave'} the gradient covariance's "
                     f"top eigenvalue lower at the same loss, {'as' if v['passed'] else 'unlike'} the break-even "
                     f"picture of {refs}.")
        elif fid == "break-even-adam":
            text += (f" {'This extends' if v['passed'] else 'This does not extend'} the SGD break-even effect of "
                     f"{refs} to Adam.")
        if key == "ntk":
            text += " " + kernel_scale_note(m["values"][a]["ntk_move"], m["values"][b]["ntk_move"], v["passed"])
        if fid == "alice-glass":
            text += (f" Alice, which bounds its steps by the glass curvature, {'does' if v['passed'] else 'does not'} "
                     f"end up in flatter glass than Adam at the same loss ({refs} measures the density; here it is "
                     "compared along trajectories).")
        elif fid == "kfac-first":
            norms = np.array([r["grad_norms_init"] for r in results["runs"]["sgd-mom"]])
            first_last = float(np.median(norms[:, 0] / norms[:, -1]))
            text += (f" At initialization the first layer's gradient norm is {first_last:.3g}× the last layer's "
                     f"(median over seeds): {'no' if first_last > 0.1 else 'a'} vanishing-curvature regime at this "
                     f"depth ({refs}).")
        lines.append(text)
    return "\n".join(lines)


def rates_markdown(results: dict) -> str:
    """The grids and the rates the rules chose, as a sentence per optimizer."""
    cfg: Config = results["config"]
    rows = [f"- {NAMES.get(n, n) if n != 'sgd' else 'SGD'}: grid {', '.join(f'{lr:g}' for lr in grid(cfg, n))}"
            for n in TUNED]
    r = results["rates"]
    chosen = ", ".join(f"{NAMES[n]} {r[n]:.3g}" for n in RUNS)
    return ("Learning-rate grids (five rates half a decade apart, the same size for every optimizer):\n\n"
            + "\n".join(rows) + f"\n\nRates used (chosen on validation data, selection seeds "
            f"{', '.join(map(str, results['select_seeds']))}): {chosen}.")


def init_markdown(results: dict) -> str:
    """Per-layer gradient norms at initialization (median over seeds), input to output, for both nets."""
    parts = []
    for name, label in (("sgd-mom", "MLP, weight matrices"), ("gn", "reversible net, half-block weights")):
        norms = np.median(np.array([r["grad_norms_init"] for r in results["runs"][name]]), axis=0)
        parts.append(f"{label}: " + ", ".join(f"{v:.3g}" for v in norms))
    return ("Gradient norms ‖∇W L‖ per layer at initialization on the probe set (median over seeds, input to "
            "output) — " + "; ".join(parts) + ".")


# --------------------------------------------------------------------------- tables, figures, views
TABLE_GROUPS = (("evals", "loss", "test_acc", "lam_h", "lam_k"), ("tr_k", "rho", "hess", "ntk_move", "ntk", "cka"))


#: HTML column headers of the tables.
HEADERS = {"evals": "grad. evals", "train_seconds": "train time (s)", "loss": "train loss", "test_acc": "test acc",
           "lam_h": "λ<sub>H</sub><sup>1</sup>", "lam_k": "λ<sub>K</sub><sup>1</sup>", "tr_k": "Tr K",
           "rho": "glass ρ", "hess": "Hess. diag", "ntk_move": "NTK move", "ntk": "NTK dist.", "cka": "CKA"}


def matched_table_html(results: dict, group: int = 0, point: str = "matched") -> str:
    """One row per run, the lenses of ``TABLE_GROUPS[group]`` as ``median`` over ``[lo, hi]`` (95 %
    bootstrap interval over seeds), at matched training loss (``point="matched"``) or at the
    evaluation budget (``point="budget"``, with the training wall time instead of the evaluations)."""
    if point not in ("matched", "budget"):
        raise ValueError(f"unknown point {point!r}: allowed values are 'matched', 'budget'")
    keys = TABLE_GROUPS[group]
    if point == "budget":
        keys = tuple("train_seconds" if k == "evals" else k for k in keys)
    values = results["matched"]["values"] if point == "matched" else at_budget(results)
    head = "".join(f"<th style='padding:2px 6px'>{HEADERS[k]}</th>" for k in keys)
    body = []
    for name in RUNS:
        cells = []
        for k in keys:
            med, (lo, hi) = median_interval(values[name][k])
            cells.append(f"<td style='padding:2px 6px;text-align:right'>{med:.3g}<br>"
                         f"<small>[{lo:.3g}, {hi:.3g}]</small></td>")
        body.append(f"<tr><td style='padding:2px 6px'>{html.escape(NAMES[name])}</td>{''.join(cells)}</tr>")
    return (f"<table style='font-size:0.85em;max-width:676px'><thead><tr><th>run</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _shown(key: str, y: np.ndarray) -> np.ndarray:
    """``y`` with the values a log axis cannot show masked (the NTK distance is 0 at initialization)."""
    y = np.asarray(y, float)
    return np.where(y > 1e-12, y, np.nan) if LENSES[key][2] else y


def _median_curve(rs: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(r[key]) for r in rs)
    return np.asarray(rs[0]["evals"][:n]), _shown(key, np.median(np.array([r[key][:n] for r in rs]), axis=0))


def _plot_lens(ax, results: dict, key: str, names: Sequence[str]) -> None:
    for name in names:
        x, y = _median_curve(results["runs"][name], key)
        ax.plot(x, y, color=COLORS[name], ls="--" if name in REVERSIBLE else "-", label=NAMES[name])
        if key == "lam_h" and name in ("sgd-small", "sgd-large"):
            ax.axhline(2 / results["rates"][name], color=COLORS[name], ls=":", lw=1.0)
    _header, label, log = LENSES[key]
    ax.set(xlabel="gradient evaluations", ylabel=label)
    if log:
        ax.set_yscale("log")


def figure_lenses(results: dict, keys: Sequence[str]):
    """Median trajectories over seeds of the lenses ``keys`` vs gradient evaluations, every run
    (reversible-net runs dashed; dotted: 2/η of the two SGD runs in the λ_H¹ panel)."""
    fig, axes = panels(len(keys), row_height=2.3)
    for ax, key in zip(axes, keys):
        _plot_lens(ax, results, key, RUNS)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    return fig


def heatmap_matrix(results: dict) -> tuple[np.ndarray, list[str]]:
    """Medians at matched loss (runs × lenses), each column scaled to [0, 1] (log scale for log lenses)."""
    keys = [k for k in LENSES if k != "loss"] + ["evals"]
    M = np.array([[np.median(results["matched"]["values"][n][k]) for k in keys] for n in RUNS], float)
    out = np.empty_like(M)
    for j, k in enumerate(keys):
        col = M[:, j]
        if k == "evals" or LENSES.get(k, ("", "", False))[2]:
            col = np.log10(np.clip(col, 1e-12, None))
        lo, hi = np.nanmin(col), np.nanmax(col)
        out[:, j] = (col - lo) / (hi - lo) if hi > lo else 0.5
    return out, keys


TICKS = {"lam_h": r"$\lambda_H^1$", "lam_k": r"$\lambda_K^1$", "tr_k": r"Tr $K$", "rho": r"glass $\rho$"}


def figure_heatmap(results: dict):
    """Every lens at matched training loss, each column normalised across runs (log for log lenses)."""
    import matplotlib.pyplot as plt
    M, keys = heatmap_matrix(results)
    fig, ax = plt.subplots(figsize=(6.8, 3.9), layout="constrained")
    im = ax.imshow(M, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(keys)), [TICKS.get(k, LENSES[k][0] if k in LENSES else "grad. evals") for k in keys],
                  rotation=30, ha="right")
    ax.set_yticks(range(len(RUNS)), [NAMES[n] for n in RUNS])
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="column-normalised value (0 = lowest run)")
    ax.set_title("lenses at matched training loss (median over seeds)")
    return fig


def draw_pair(results: dict, optimizer_a: str = "Adam", optimizer_b: str = "K-FAC α=1", lens: str = "NTK dist."):
    """Widget view: two runs' lens trajectories (median and per-seed lines) vs gradient evaluations."""
    by_label = {v: k for k, v in NAMES.items()}
    by_header = {v[0]: k for k, v in LENSES.items()}
    for value, allowed in ((optimizer_a, by_label), (optimizer_b, by_label), (lens, by_header)):
        if value not in allowed:
            raise ValueError(f"unknown choice {value!r}: allowed values are {', '.join(map(repr, allowed))}")
    key = by_header[lens]
    fig, (ax,) = panels(1, row_height=2.8)
    for label in dict.fromkeys((optimizer_a, optimizer_b)):
        name = by_label[label]
        for r in results["runs"][name]:
            ax.plot(r["evals"], _shown(key, r[key]), color=COLORS[name], alpha=0.3, lw=0.8)
        _plot_lens(ax, results, key, [name])
    ax.legend(loc="best")
    return fig


def widget_options() -> dict[str, list[str]]:
    """The dropdowns of the pair view and the static frames kept for the book (≤ 40)."""
    names = [NAMES[n] for n in RUNS]
    lenses = [v[0] for v in LENSES.values()]
    return {"optimizer_a": [NAMES["adam"]] + [n for n in names if n != NAMES["adam"]], "optimizer_b": [NAMES["kfac-1"]] + [n for n in names if n != NAMES["kfac-1"]],
            "lens": [LENSES["ntk"][0]] + [l for l in lenses if l != LENSES["ntk"][0]],
            "static_values": {"optimizer_a": [NAMES["adam"]],
                              "optimizer_b": [NAMES[n] for n in ("kfac-1", "alice", "gn", "sgd-large")],
                              "lens": lenses}}
