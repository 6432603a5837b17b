"""The report of the atlas chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.atlas.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import dataclasses
import html
from typing import Sequence

import numpy as np

from curvnb.claims import (ClaimSpec, by_verdict, evaluate, format_estimate, format_interval, format_value,
                           read_claims, record_verdict, verdict, what_we_found)
from curvnb.figures import panels
from curvnb.studies.atlas.compute import Config, LENSES, PROFILES, RUNS, STREAMS, TUNED, grid


NAMES = {"sgd-small": "SGD (small lr)", "sgd-large": "SGD (large lr)", "sgd-mom": "SGD-momentum",
         "adam": "Adam", "adam-small": "Adam (lr ÷ 10)", "kfac-half": "K-FAC α=½", "kfac-1": "K-FAC α=1",
         "alice": "Alice", "gn": "exact GN (rev)", "rev-sgd": "SGD (rev)", "rev-adam": "Adam (rev)"}
# Each run its own (colour, line style, marker): Okabe–Ito colours repeat across run families, so the
# line style (dashed: reversible nets; dotted: the smaller rate) and the marker tell them apart too.
STYLES = {"sgd-small": ("#56B4E9", ":", "o"), "sgd-large": ("#0072B2", "-", "s"), "sgd-mom": ("#009E73", "-", "^"),
          "adam": ("#E69F00", "-", "D"), "adam-small": ("#E69F00", ":", "d"), "kfac-half": ("#CC79A7", ":", "v"),
          "kfac-1": ("#CC79A7", "-", "P"), "alice": ("#000000", "-", "X"), "gn": ("#D55E00", "--", "*"),
          "rev-sgd": ("#0072B2", "--", "h"), "rev-adam": ("#E69F00", "--", "p")}
COLORS = {name: style[0] for name, style in STYLES.items()}
PAIR_COLORS = ("#0072B2", "#D55E00")   # "Compare two runs": run A blue, run B vermillion, whatever the runs


def at_budget(results: dict) -> dict[str, dict[str, list[float]]]:
    """Per run, every lens at its last probe: the equal-gradient-evaluations comparison."""
    return {name: {key: [float(r[key][-1]) for r in rs] for key in (*LENSES, "evals", "train_seconds")}
            for name, rs in results["runs"].items()}


# --------------------------------------------------------------------------- findings
def _finding(fid: str, statement: str, label: str, a: str, b: str, changed: str) -> ClaimSpec:
    return ClaimSpec(id=fid, kind="finding", statement=statement, statistic="median_of_differences",
                     direction="less", threshold=0.0, unit="seed", labels=(NAMES[a], NAMES[b]),
                     quantity=f"{label}, median over seeds of {NAMES[a]} − {NAMES[b]}", changed=changed)


#: The book's own questions, each the median over seeds of the two runs' per-seed difference (runs of
#: one seed share their initialization: paired), with its exact order-statistic interval, answered yes
#: when the whole 95 % interval lies below 0. (Registered as a ratio of the two runs' medians below 1
#: with a paired bootstrap, which covered 91.5–93.3 % at 8 seeds by simulation: see the Changes page.
#: A per-seed ratio would need a value where a run's lens is 0 at its matched probe; the difference
#: has the same sign and is always defined.)
SPECS = (
    _finding("kfac-lazy", "On the MLP, K-FAC at α = 1 has moved the NTK less than Adam at matched training loss",
             "NTK distance at matched loss", "kfac-1", "adam", "atlas-revision-1"),
    _finding("gn-lazy", "On the reversible net, exact Gauss–Newton has moved the NTK less than Adam at matched "
             "training loss", "NTK distance at matched loss", "gn", "rev-adam", "atlas-revision-1"),
    _finding("break-even-sgd", "At matched training loss, SGD at the large learning rate sits at a lower λ_K¹ than "
             "SGD at the small rate", "λ_K¹ at matched loss", "sgd-large", "sgd-small", "atlas-break-even"),
    _finding("break-even-adam", "At matched training loss, Adam at its selected rate sits at a lower λ_K¹ than Adam "
             "at a tenth of it", "λ_K¹ at matched loss", "adam", "adam-small", "atlas-break-even"),
    _finding("alice-glass", "At matched training loss, Alice sits at a lower glass density than Adam",
             "glass density ρ at matched loss", "alice", "adam", "atlas-revision-1"),
    _finding("kfac-first", "K-FAC at α = 1 reaches the target training loss in fewer gradient evaluations than "
             "SGD-momentum", "gradient evaluations to the target", "kfac-1", "sgd-mom", "atlas-revision-1"),
)
FINDINGS = tuple(spec.id for spec in SPECS)
#: Per finding: (run a, run b, lens at the matched probe), and the chapters it speaks to.
COMPARED = {"kfac-lazy": ("kfac-1", "adam", "ntk"), "gn-lazy": ("gn", "rev-adam", "ntk"),
            "break-even-sgd": ("sgd-large", "sgd-small", "lam_k"), "break-even-adam": ("adam", "adam-small", "lam_k"),
            "alice-glass": ("alice", "adam", "rho"), "kfac-first": ("kfac-1", "sgd-mom", "evals")}
LINKS = {"kfac-lazy": ("03_huh2020", "07_buffelli2024"), "gn-lazy": ("07_buffelli2024",),
         "break-even-sgd": ("05_jastrzebski2020",), "break-even-adam": ("05_jastrzebski2020",),
         "alice-glass": ("06_duersch2024",), "kfac-first": ("03_huh2020", "04_orvieto2021")}


def claims(results: dict, specs: Sequence[ClaimSpec] = SPECS) -> list:
    """Every finding decided by :func:`curvnb.claims.evaluate` on the per-seed values at matched loss
    (a run that never reached the target has no matched value: it is left out and named in the detail);
    ``specs``: the findings' rule (:data:`BOOTSTRAP_SPECS` gives the rule it replaced, on the same values)."""
    values, seed = results["matched"]["values"], results["seed"]
    out = []
    for i, spec in enumerate(specs):
        a, b, key = COMPARED[spec.id]
        va, vb = np.asarray(values[a][key], float), np.asarray(values[b][key], float)
        keep = np.isfinite(va) & np.isfinite(vb)
        detail = {"target training loss": results["matched"]["target"],
                  "learning rates (selected)": f"{NAMES[a]} {results['rates'][a]:.3g}, {NAMES[b]} {results['rates'][b]:.3g}"}
        if not keep.all():
            detail["seeds left out (target not reached)"] = [u for u, k in zip(results["units"], keep) if not k]
        out.append(evaluate(spec, va[keep], vb[keep], seed=STREAMS.seed(seed, "bootstrap", i), detail=detail))
    return out


def _link(stem: str) -> str:
    label = {"03_huh2020": "Huh chapter", "04_orvieto2021": "Orvieto chapter", "05_jastrzebski2020": "Jastrzębski chapter",
             "06_duersch2024": "Duersch chapter", "07_buffelli2024": "Buffelli chapter"}[stem]
    return f"[the {label}]({stem}.ipynb)"


def study_record(chapter: str, claim_id: str) -> dict | None:
    """The record of claim ``claim_id`` in the latest run of study ``chapter`` (None: no record).

    ``chapter`` must be one of atlas's declared inputs (:data:`curvnb.book.CHAPTER_INPUTS`), which
    ``curvnb run`` runs before atlas when it runs chapters side by side."""
    from curvnb.book import CHAPTER_INPUTS
    from curvnb.paths import build_dir

    if chapter not in CHAPTER_INPUTS.get("atlas", ()):
        raise ValueError(f"atlas reads {chapter!r}'s claims but does not declare it in curvnb.book.CHAPTER_INPUTS")

    try:
        records = {r["id"]: r for r in read_claims(build_dir() / "claims" / f"{chapter}.json")}
    except (OSError, ValueError):
        return None
    return records.get(claim_id)


def compared_with_study(chapter: str, claim_id: str, setting: str) -> str:
    """The study chapter's own verdict on the same claim, in the engine's words (\"\" if it has not run)."""
    theirs = study_record(chapter, claim_id)
    if theirs is None:
        return ""
    return (f" In the study chapter's own run ({setting}, {theirs.get('profile', '?')} profile) the claim is "
            f"*{record_verdict(theirs)}*: {format_estimate(theirs)}"
            + (f", {format_interval(theirs)}" if format_interval(theirs) else "") + ".")


def kernel_scale_note(move_a: Sequence[float], move_b: Sequence[float]) -> str:
    """The laziness findings measure the NTK's change of direction (1 − cos); this sentence gives the
    median ratio of its relative change ‖K_t − K_0‖/‖K_0‖, which also sees a change of scale (a lens
    added after the findings were registered: reported, not decided)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(move_a) / np.median(move_b))
    text = ("By the relative change ‖K_t − K_0‖/‖K_0‖ instead (added after the findings were registered, so not "
            "a finding) the ratio of medians is ")
    if not np.isfinite(ratio):
        return text + "undefined (the second run's kernel has not moved at its matched probe)."
    return text + f"{ratio:.3g}: by that measure the kernel moved {'less' if ratio < 1 else 'more'}."


def _why(record: dict, results: dict) -> str:
    """The study's explanation of one finding, conditioned on its verdict."""
    fid, refs = record["id"], " and ".join(_link(s) for s in LINKS[record["id"]])
    a, b, key = COMPARED[fid]
    m = results["matched"]["values"]
    if fid == "kfac-lazy":
        text = by_verdict(record, "K-FAC at α = 1 trains lazier than Adam here",
                          "K-FAC at α = 1 moves the kernel more than Adam here",
                          "These seeds cannot tell whether K-FAC at α = 1 is lazier than Adam") \
            + f"; Buffelli et al. report laziness for exact GN ({refs})."
    elif fid == "gn-lazy":
        text = ("Buffelli et al. report that exact GN trains lazily; here, on MNIST-1D at matched loss, "
                + by_verdict(record, "it does", "it moves the kernel more than Adam", "these seeds cannot tell")
                + f" ({refs})." + compared_with_study("buffelli2024", "lazy", "digits, equal steps"))
    elif fid == "break-even-sgd":
        text = by_verdict(record, "A larger SGD step leaves the gradient covariance's top eigenvalue lower at the "
                          "same loss, as in the break-even picture of ", "A larger SGD step leaves λ_K¹ higher at the "
                          "same loss, against the break-even picture of ", "Whether a larger SGD step leaves λ_K¹ "
                          "lower at the same loss, as in the break-even picture of ") + refs \
            + by_verdict(record, ".", ".", ", these seeds cannot tell.")
    elif fid == "break-even-adam":
        text = by_verdict(record, "This extends", "This reverses", "These seeds cannot tell whether this extends") \
            + f" the SGD break-even effect of {refs} to Adam."
    elif fid == "alice-glass":
        text = ("Alice bounds its steps by the glass curvature; "
                + by_verdict(record, "it ends up in flatter glass than Adam at the same loss",
                             "it ends up in sharper glass than Adam at the same loss",
                             "whether it ends up in flatter glass than Adam at the same loss is open here")
                + f" ({refs} measures the density; here it is compared along trajectories).")
    else:
        norms = np.array([r["grad_norms_init"] for r in results["runs"]["sgd-mom"]])
        first_last = float(np.median(norms[:, 0] / norms[:, -1]))
        text = (f"At initialization the first layer's gradient norm is {first_last:.3g}× the last layer's (median "
                f"over seeds): {'no' if first_last > 0.1 else 'a'} vanishing-curvature regime at this depth ({refs}).")
    if key == "ntk":
        text += " " + kernel_scale_note(m[a]["ntk_move"], m[b]["ntk_move"])
    return text


def findings_markdown(records: Sequence[dict], results: dict) -> str:
    """What the findings answered (generated from the records) and why, per finding."""
    m = results["matched"]
    lines = [f"Target training loss: {m['target']:.3g} (1.05 × the largest final training loss of all "
             f"{len(RUNS)} runs × {len(results['units'])} seeds).", "", what_we_found(list(records)), ""]
    for r in records:
        lines.append(f"- *{r['statement']}?* **{verdict(r)}**. {_why(r, results)}")
    return "\n".join(lines)


#: The first run's answers (finding seeds 0, 1, 2 of the old derivation, first settings; interval: the
#: percentile bootstrap of that version), from the revision note this chapter's study module kept.
FIRST_ANSWERS = {"kfac-lazy": ("yes", 0.10, (0.081, 0.10)), "gn-lazy": ("yes", 0.52, (0.35, 0.84)),
                 "break-even-sgd": ("no", 1.0, (1.0, 1.0)), "break-even-adam": ("no", 1.0, (1.0, 1.0)),
                 "alice-glass": ("no", 2.2, (1.1, 2.9)), "kfac-first": ("no", 1.0, (1.0, 1.0))}

#: The rule the findings had before the per-seed differences: the ratio of the two runs' medians below 1,
#: with the engine's paired bootstrap. The chapter states its answer on this run's values beside the new one.
BOOTSTRAP_SPECS = tuple(dataclasses.replace(s, statistic="ratio_of_medians_paired", threshold=1.0, quantity="")
                        for s in SPECS)


def _answers(answers: dict) -> str:
    return "; ".join(f"{fid} *{v}* ({est:.2g} [{lo:.2g}, {hi:.2g}])" for fid, (v, est, (lo, hi)) in answers.items())


def _bootstrap_answers(results: dict) -> str:
    """The replaced rule's answer on this run's values, one phrase per finding (computed, not kept)."""
    records = [res.record("") for res in claims(results, BOOTSTRAP_SPECS)]
    return "; ".join(f"{r['id']} *{verdict(r)}* ({format_value(r['measured'])}"
                     + (f" [{format_value(r['interval'][0])}, {format_value(r['interval'][1])}])" if r["interval"] else
                        ", too few seeds for its interval)") for r in records)


def registration_markdown(results: dict) -> str:
    """The pre-registration, its revision after the first run, and the first answers (in the chapter)."""
    first = _answers(FIRST_ANSWERS)
    changed = sorted({s.changed for s in SPECS if s.changed})
    return (
        "**Pre-registration and its revision.** The six findings — statistic (a ratio of two runs' medians over "
        "seeds), threshold (1) and direction — were written into the study module and committed before the chapter "
        "first ran. After that first run (three seeds) the protocol was revised once, thresholds unchanged: "
        "(1) the two break-even findings had been registered on the *peak* λ_K¹ from initialization to the matched "
        "probe, but the runs of one seed share their initialization and λ_K¹ fell from it in every run, so the peak "
        "was the common initial value and the ratio 1 by construction — they now read λ_K¹ *at* the matched probe; "
        f"(2) probes every 50 steps tied most runs at the first or second probe (kfac-first tied), so they are now "
        f"every {PROFILES['quick'].probe_every} steps in the quick profile; (3) the selected rates of SGD-momentum, K-FAC α = ½ and Alice "
        f"sat at the top of their grids, which moved up half a decade. First answers (old settings): {first}. "
        "Since then every random draw comes from the book's seed streams (chapter seed, stream, unit), so every "
        "result below is on seeds no earlier run used, rate selection on its own selection streams; the answers "
        "have three values (yes / no / inconclusive) and honest 95 % intervals. The quick profile runs "
        f"{PROFILES['quick'].seeds} seeds, the fewest with which the paired bootstrap of two medians could decide "
        "(until then it ran three, and every finding was inconclusive by construction). A second revision changed "
        "the statistic (its threshold restated on the new scale: a ratio below 1 is a difference below 0): simulated from this chapter's own 8 seeds, that bootstrap's 95 % "
        "interval covered only 91.5–93.3 % for five of the six findings, so each finding is now the median over "
        "seeds of the two runs' per-seed difference, below 0 (the ratio's sign; a ratio is undefined where a run's "
        "lens is 0 at its matched probe), with its exact order-statistic interval (at 8 seeds, the smallest "
        "and largest difference: *yes* only when every seed's difference lies below 0). It was committed before it ran and "
        f"answered on chapter seeds the chapter had not run (the Changes page). The bootstrap's answers on this "
        f"run's values (ratios): {_bootstrap_answers(results)}. "
        + (f"The claims table links each revised finding to its entry on the book's Changes page "
           f"({', '.join(changed)})." if changed else ""))


def rates_markdown(results: dict) -> str:
    """The grids and the rates the rules chose, as a sentence per optimizer."""
    cfg: Config = results["config"]
    rows = [f"- {NAMES.get(n, n) if n != 'sgd' else 'SGD'}: grid {', '.join(f'{lr:g}' for lr in grid(cfg, n))}"
            for n in TUNED]
    r = results["rates"]
    chosen = ", ".join(f"{NAMES[n]} {r[n]:.3g}" for n in RUNS)
    return ("Learning-rate grids (five rates half a decade apart, the same size for every optimizer):\n\n"
            + "\n".join(rows) + f"\n\nRates used (chosen on validation data, on "
            f"{len(results['select_units'])} selection seed(s) of their own stream): {chosen}.")


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
    """One row per run, the lenses of ``TABLE_GROUPS[group]`` as ``median`` over ``[min, max]`` (the
    range over seeds, a description, not an interval), at matched training loss (``point="matched"``) or at the
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
            v = np.asarray(values[name][k], float)
            med, lo, hi = np.median(v), np.min(v), np.max(v)
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


def _plot_lens(ax, results: dict, key: str, names: Sequence[str], color: str | None = None) -> None:
    for name in names:
        x, y = _median_curve(results["runs"][name], key)
        c, ls, marker = STYLES[name]
        ax.plot(x, y, color=color or c, ls=ls, marker=marker, ms=4, markevery=max(1, len(x) // 6), label=NAMES[name])
        if key == "lam_h" and name in ("sgd-small", "sgd-large"):
            ax.axhline(2 / results["rates"][name], color=COLORS[name], ls=":", lw=1.0)
    _header, label, log = LENSES[key]
    ax.set(xlabel="gradient evaluations", ylabel=label)
    shown = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()])
    shown = shown[np.isfinite(shown) & (shown > 0)]
    if log and shown.size and shown.max() / shown.min() > 10:   # a log axis only where values span decades
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
    ax.set(xlabel="lens", ylabel="run")
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
    for label, color in zip(dict.fromkeys((optimizer_a, optimizer_b)), PAIR_COLORS):
        name = by_label[label]
        for r in results["runs"][name]:
            ax.plot(r["evals"], _shown(key, r[key]), color=color, alpha=0.3, lw=0.8)
        _plot_lens(ax, results, key, [name], color=color)
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
