"""The report of the buffelli2024 chapter: the claims (declared once, decided by :func:`curvnb.claims.evaluate`)
and the generated prose over the results of :mod:`curvnb.studies.buffelli2024.compute` (editing this module
reuses every cached result). Figures: :mod:`curvnb.studies.buffelli2024.figures`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from curvnb.claims import ClaimSpec, Result, by_verdict, evaluate, format_estimate, format_interval, what_we_found
from curvnb.claims.engine import _side
from curvnb.studies.buffelli2024.compute import GROUPS, SCORES, TARGET_FACTOR, TUNED, _exactness, steps_to_drop

NAMES = {"gn": "exact GN", "adam": "Adam", "sgd": "SGD"}
LABEL = {"gn": "GN", "adam": "Adam"}
CHANGES = "buffelli2024-"   # prefix of this chapter's anchors on the book's Changes page

# --------------------------------------------------------------------------- the claims, declared once
EXACTNESS = ClaimSpec(
    id="exactness", kind="paper", source="abstract and Sec. 4: exact GN is tractable in reversible networks",
    statement="the block-wise GN update solves J u = ε exactly (J formed explicitly; d=12, M=40, n=24, L=1–4, "
              "float64; ε from the softmax residual and from the exact logit-Hessian pseudo-inverse); with L=1 and "
              "a square readout it equals J⁺ε",
    statistic="value", direction="less", threshold=1e-8, unit="run",
    quantity="largest relative residual ‖Ju − ε‖/‖ε‖ and ‖u − J⁺ε‖/‖J⁺ε‖ (L=1)")
INVERSE = ClaimSpec(
    id="inverse", kind="check", source="RevNet coupling blocks", statistic="value", direction="less",
    threshold=1e-10, unit="run", statement="inputs are reconstructed exactly from the last features (float64, L=1–4)",
    quantity="largest relative reconstruction error")
MIN_NORM = ClaimSpec(
    id="min-norm", kind="check", source="authors' code: block-wise construction", statistic="value",
    direction="less", threshold=1e-8, unit="run", changed=CHANGES + "min-norm",
    statement="the min_norm option equals J⁺ε (explicit Jacobian, float64, L=1–4)",
    quantity="largest ‖u_min_norm − J⁺ε‖/‖J⁺ε‖")
RIGHT_INVERSE = ClaimSpec(
    id="right-inverse-longer", kind="check", source="authors' code: block-wise construction", statistic="value",
    direction="greater", threshold=1 - 1e-10, unit="run", changed=CHANGES + "min-norm",
    statement="the default block-wise update is a right inverse, at least as long as the minimum-norm step J⁺ε "
              "(L=2–4)", quantity="smallest ‖u‖/‖J⁺ε‖")
SPEED = ClaimSpec(
    id="full-batch-speed", kind="paper", source="abstract: faster progress per iteration; full-batch experiments",
    statement=f"full batch (n ≤ M+1): GN lowers the training loss {TARGET_FACTOR:g}× in fewer steps than Adam, each at "
              "the rate that reaches that target fastest on selection seeds",
    statistic="mean_of_differences", direction="greater", threshold=0.0, physical_unit="steps",
    quantity="mean of Adam − GN steps", labels=("Adam", "GN"), changed=CHANGES + "full-batch-speed")
OVERFIT = ClaimSpec(
    id="mini-batch-overfit", kind="paper", source="abstract: progress saturates, updates overfit each mini-batch",
    statement="mini-batch GN: one step lowers its own batch's loss by more than 50 % (median over steps)",
    statistic="mean", direction="greater", threshold=0.5, quantity="own-batch loss drop of one GN step, mean over "
    "seeds of the median over steps", changed=CHANGES + "mini-batch-overfit")
TRAIN_GAP = ClaimSpec(
    id="mini-batch-train-gap", kind="paper", source="abstract: progress saturates, updates overfit each mini-batch",
    statement="mini-batch GN's training loss ends above Adam's", statistic="mean_of_differences",
    direction="greater", threshold=0.0, physical_unit="nats", quantity="mean of GN − Adam final training loss",
    labels=("GN", "Adam"), changed=CHANGES + "mini-batch-overfit")
GENERALIZATION = ClaimSpec(
    id="generalization", kind="paper", source="abstract: exact GN generalizes poorly",
    statement="mini-batch GN's test accuracy ends below Adam's", statistic="mean_of_differences",
    direction="greater", threshold=0.0, physical_unit="accuracy points",
    quantity="mean of Adam − GN test accuracy", labels=("Adam", "GN"), changed=CHANGES + "selection")
LAZY = ClaimSpec(
    id="lazy", kind="paper", source="abstract: lazy regime, NTK and representations barely change",
    statement="GN trains lazier than Adam: its NTK moves less from initialization", statistic="mean_of_differences",
    direction="greater", threshold=0.0, quantity="mean of Adam − GN final NTK distance from init",
    labels=("Adam", "GN"), changed=CHANGES + "lazy")
LAZY_CKA = ClaimSpec(
    id="lazy-cka", kind="paper", source="abstract: lazy regime, NTK and representations barely change",
    statement="GN trains lazier than Adam: its features stay closer to their initial values (linear CKA)",
    statistic="mean_of_differences", direction="greater", threshold=0.0,
    quantity="mean of GN − Adam final feature CKA with init", labels=("GN", "Adam"), changed=CHANGES + "lazy")
SPECS = (EXACTNESS, INVERSE, MIN_NORM, RIGHT_INVERSE, SPEED, OVERFIT, TRAIN_GAP, GENERALIZATION, LAZY, LAZY_CKA)


# --------------------------------------------------------------------------- deciding them
def _decide(spec: ClaimSpec, values: Sequence[np.ndarray], diverged: np.ndarray, detail: dict) -> Result:
    """``evaluate`` on the units that did not diverge; diverged units enter no contrast (named in detail)."""
    keep = ~np.asarray(diverged, bool)
    detail = {**detail, "diverged test seeds": [int(i) for i in np.flatnonzero(~keep)] or "none"}
    if keep.any():
        return evaluate(spec, *(np.asarray(v, float)[keep] for v in values), detail=detail)
    nan = float("nan")
    return Result(spec, nan, None, "inconclusive", 0, {"design": spec.definition.design}, _side(spec, nan), None, None,
                  "every test seed diverged: nothing to compare", detail)


def _all_diverged(results: dict, group: str, name: str) -> bool:
    """Every rate of ``name``'s grid diverged in ``group`` on the selection seeds (no rate trains it)."""
    return all(np.isinf(SCORES[group](run)) for (n, _), run in results["selection"][group].items() if n == name)


def _rates(results: dict, group: str) -> dict[str, float]:
    return {LABEL[n]: results["selected"][(group, n)] for n in TUNED}


def _rich_detail(results: dict) -> dict[str, Any]:
    """The lazy-vs-rich control for the record: its selected rates and, per optimizer, its mean final
    feature CKA with init over the seeds that did not diverge (or that it diverged)."""
    out: dict[str, Any] = {"control rates (selected)": _rates(results, "rich")}
    for n in TUNED:
        r = results["rich"][n]
        ok = ~r["diverged"]
        out[f"control {LABEL[n]}"] = ("diverged on every test seed" if not ok.any() else
                                      f"mean final CKA {np.mean(r['cka'][-1][ok].mean(-1)):.3g}"
                                      + (f" (diverged on seeds {np.flatnonzero(~ok).tolist()})" if (~ok).any() else ""))
    return out


def _exact_results(exact: dict) -> list[Result]:
    depths = (1, 2, 3, 4)
    res = {f"L{d}": exact[f"L{d}_residual"] for d in depths}
    res_h = {f"L{d}": exact[f"L{d}_hessian_pinv_residual"] for d in depths}
    ratios = {f"L{d}": exact[f"L{d}_norm_ratio"] for d in depths[1:]}
    worst = max(*res.values(), *res_h.values(), exact["L1_vs_pinv"])
    return [evaluate(EXACTNESS, worst, detail={"residual": res, "residual (Hessian pinv)": res_h,
                                               "L1 vs J⁺ε": exact["L1_vs_pinv"]}),
            evaluate(INVERSE, max(exact[f"L{d}_inverse"] for d in depths)),
            evaluate(MIN_NORM, max(exact[f"L{d}_min_norm_vs_pinv"] for d in depths)),
            evaluate(RIGHT_INVERSE, min(ratios.values()), detail={"‖u‖/‖J⁺ε‖": ratios})]


def _speed(results: dict) -> Result:
    full = {n: results["full"][n] for n in TUNED}
    steps = {n: steps_to_drop(full[n]["train_loss"], full[n]["step"]) for n in TUNED}
    sel = results["selection"]["full"]
    by_rate = {LABEL[n]: {f"{lr:g}": float(np.mean(steps_to_drop(sel[(n, lr)]["train_loss"], sel[(n, lr)]["step"])))
                          for lr in results["grids"][n]} for n in TUNED}
    detail = {"rates (selected)": _rates(results, "full"), "selection: mean steps by rate": by_rate,
              "censored at": int(full["gn"]["step"][-1]) + 1,
              "rates the first version's rule (validation loss) chose": {LABEL[n]: results["old_rule"][n] for n in TUNED}}
    return _decide(SPEED, (steps["adam"], steps["gn"]), full["gn"]["diverged"] | full["adam"]["diverged"], detail)


def _mini_batch(results: dict) -> list[Result]:
    mini = {n: results["mini"][n] for n in TUNED}
    div = mini["gn"]["diverged"] | mini["adam"]["diverged"]
    rates = {"rates (selected)": _rates(results, "mini")}
    b = mini["gn"]["batch"]
    with np.errstate(divide="ignore", invalid="ignore"):
        own = 1 - b["after"] / b["before"]
        other = 1 - b["others_after"] / b["others_before"]
    kept = lambda v: float(np.mean(np.median(v, axis=0)[~div])) if (~div).any() else None  # noqa: E731
    overfit_detail = {**rates, "first 20 steps": kept(own[:20]), "last 50 steps": kept(own[-50:]),
                      "another batch": kept(other)}
    last = lambda key, n: mini[n][key][-1]  # noqa: E731
    cka = {n: mini[n]["cka"][-1].mean(-1) for n in TUNED}
    n_test = results.get("n_test")
    return [_decide(OVERFIT, (np.median(own, axis=0),), mini["gn"]["diverged"], overfit_detail),
            _decide(TRAIN_GAP, (last("train_loss", "gn"), last("train_loss", "adam")), div, rates),
            _decide(GENERALIZATION, (100 * last("test_acc", "adam"), 100 * last("test_acc", "gn")), div,
                    {**rates, "test images": n_test}),
            _decide(LAZY, (last("ntk_distance", "adam"), last("ntk_distance", "gn")), div,
                    {**rates, **_rich_detail(results)}),
            _decide(LAZY_CKA, (cka["gn"], cka["adam"]), div, rates)]


def claims(results: dict, exact: dict | None = None) -> list[Result]:
    """Every claim of the chapter, decided by the engine (exact checks on ``exact``, the others on the
    test seeds of ``results`` at the rates chosen on the selection seeds)."""
    exact = exact if exact is not None else _exactness(0)
    return [*_exact_results(exact), _speed(results), *_mini_batch(results)]


# --------------------------------------------------------------------------- generated prose
def selection_markdown(results: dict) -> str:
    """Which learning rates the rules chose on the selection seeds (generated from the run)."""
    sel, grids, cfg = results["selected"], results["grids"], results["config"]
    what = {"full": ("Full batch", f"mean steps to a {TARGET_FACTOR:g}× lower training loss"),
            "mini": ("Mini-batch", "mean final validation loss"),
            "rich": ("Lazy-vs-rich control", "mean final validation loss")}
    lines = []
    for group in GROUPS:
        (title, objective), score = what[group], SCORES[group]
        parts = []
        for n in TUNED:
            vals = ", ".join(f"{lr:g}: {score(results['selection'][group][(n, lr)]):.3g}"
                             for lr in grids[n])
            chosen = (f"no rate: every one diverged (lr {sel[(group, n)]:g} is run on the test seeds to show it)"
                      if _all_diverged(results, group, n) else f"lr {sel[(group, n)]:g}")
            parts.append(f"{NAMES[n]} {chosen} ({objective} by rate — {vals})")
        lines.append(f"- {title}: " + "; ".join(parts) + ".")
    return (f"Learning rates chosen on {_n(cfg.selection_seeds, 'selection seed')} (never the test seeds; "
            "a diverged run scores +∞):\n\n" + "\n".join(lines))


def rich_markdown(results: dict) -> str:
    """The lazy-vs-rich control on the test seeds, described from the run (a diverged run is said so)."""
    parts, cond = [], results["design_condition"]
    for name in TUNED:
        lazy, r = results["mini"][name], results["rich"][name]
        ok = ~r["diverged"]
        if _all_diverged(results, "rich", name):
            parts.append(f"{NAMES[name]} diverged in the control at every rate of its grid on the selection seeds, "
                         f"and at lr {r['lr']:g} on {int((~ok).sum())} of {len(ok)} test seeds: it has no control here")
            continue
        if not ok.any():
            state = (f"the control (lr {r['lr']:g}) diverged on every test seed (training loss "
                     f"{np.nanmean(r['train_loss'][0]):.3g} → {np.nanmax(r['train_loss']):.3g}): it is no control")
        else:
            state = f"{np.mean(r['cka'][-1][ok].mean(-1)):.2f} in the control (lr {r['lr']:g})" + (
                f" (diverged on test seeds {np.flatnonzero(~ok).tolist()}, left out)" if (~ok).any() else "")
        parts.append(f"{NAMES[name]}: mean final feature CKA with init {np.mean(lazy['cka'][-1].mean(-1)):.2f} in "
                     f"the wide setting (lr {lazy['lr']:g}), {state}")
    return ("; ".join(parts) + f". Median condition number of the halves' $[\\varphi, 1]$ at initialization: "
            f"{cond['control']:.3g} in the control, {cond['wide']:.3g} in the wide setting.")


def _line(r: dict) -> str:
    interval = format_interval(r)
    return f"{format_estimate(r)}" + (f", {interval}" if interval else "")


def _overfit_why(r: dict) -> str:
    d = r["detail"]
    if d.get("first 20 steps") is None:
        return "One GN step removes less than half of its own batch's loss."
    return (f"One GN step removes less than half of its own batch's loss over the run: most of it early on "
            f"({100 * d['first 20 steps']:.0f} % over the first 20 steps), little once the training set is nearly "
            f"fitted ({100 * d['last 50 steps']:.0f} % over the last 50); another batch's loss drops by "
            f"{100 * d['another batch']:.0f} %.")


def _why(rec: dict[str, dict]) -> list[str]:
    """The study's explanation of each statistical verdict, conditioned on it."""
    s, g, lz = rec["full-batch-speed"], rec["generalization"], rec["lazy"]
    return [
        f"- **Full-batch speed** ({_line(s)}). " + by_verdict(
            s, reproduced="With each rate chosen by the claim's own objective, GN reaches the target in fewer steps.",
            not_reproduced="Even at its fastest grid rate GN needs more steps than Adam here.",
            inconclusive="The test seeds cannot tell the two apart at this spread."),
        f"- **Mini-batch overfitting** ({_line(rec['mini-batch-overfit'])}; "
        f"train gap {_line(rec['mini-batch-train-gap'])}). "
        + by_verdict(rec["mini-batch-overfit"], reproduced="Each GN step fits most of its own batch's loss.",
                     not_reproduced=_overfit_why(rec["mini-batch-overfit"]),
                     inconclusive="The own-batch drop is too close to 50 % to decide on these seeds."),
        f"- **Generalization** ({_line(g)}). " + by_verdict(
            g, reproduced="Adam's test accuracy is higher.", not_reproduced="GN's test accuracy is higher here.",
            inconclusive="At quick scale the difference is a few test images; the paper's regime is the full profile."),
        f"- **Lazy training** ({_line(lz)}; CKA {_line(rec['lazy-cka'])}). " + by_verdict(
            lz, reproduced="GN's kernel moves less than Adam's.", not_reproduced="GN's kernel moves more than Adam's here.",
            inconclusive="Both move the kernel by a similar small amount at this width; the full profile is the "
                         "paper's regime."),
    ]


def summary_markdown(records: Sequence[dict]) -> str:
    """What we found (counts and undecided claims, from the engine) and why (conditioned on the verdicts)."""
    rec = {r["id"]: r for r in records}
    new = ("Claims marked *changed* follow a rule changed since this chapter's first version (see the Changes "
           "page); every result here is on new seeds, drawn by the book's one seed derivation.\n\n"
           if any(r.get("changed") for r in records) else "")
    return new + what_we_found(list(records)) + "\n\n" + "\n".join(_why(rec))



def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _seconds(results: dict) -> float:
    """Training time of every run of ``results`` when it was computed (the cache keeps it)."""
    runs = [r for g in GROUPS for r in (*results["selection"][g].values(), *results[g].values())]
    return float(sum(r["seconds"] for r in runs))


def what_we_ran_markdown(results: dict, metadata: dict) -> str:
    """The run behind the claims, generated from the profile's config, the selected rates and the
    chapter's run metadata (``ch.run_metadata()``): data, sizes, optimizers, steps, seeds, device, time."""
    c, sel = results["config"], results["selected"]
    rates = lambda g: ", ".join(f"{NAMES[n]} {sel[(g, n)]:g}" + (" (diverged at every rate)"  # noqa: E731
                                                                   if _all_diverged(results, g, n) else "") for n in TUNED)
    grids = "; ".join(f"{NAMES[n]} {{{', '.join(f'{lr:g}' for lr in results['grids'][n])}}}" for n in TUNED)
    rows = [
        ("data set", f"{c.dataset}: {results['n_test']} test examples, {c.n_val} validation examples held out of "
                     "the training split"),
        ("model", f"reversible net, width d = {c.width}, depth L = {c.depth}, expansion M = {c.expansion}, "
                  f"init scale {c.init_scale:g}; control: M = {c.rich_expansion}, init scale {c.rich_init_scale:g}"),
        ("rate grids", grids + f"; SGD {c.sgd_lr:g} (fixed, reference only)"),
        ("selected rates", f"full batch: {rates('full')}; mini-batch: {rates('mini')}; control: {rates('rich')}"),
        ("steps and batches", f"full batch: {c.full_steps} steps on n = {c.full_batch_n}; mini-batch: "
                              f"{c.mini_steps} steps of {c.batch_size} examples"),
        ("units", f"{_n(c.selection_seeds, 'selection seed')} (choose the rates), {_n(c.test_seeds, 'test seed')} "
                  "(the claims)"),
        ("device and time", f"{metadata.get('device', '?')}, {metadata.get('profile', '?')} profile, chapter seed "
                            f"{metadata.get('seed', '?')}; training {_seconds(results):.0f} s when computed, "
                            f"this notebook {metadata.get('wall_time_s', 0):.0f} s so far"),
    ]
    return "**What we ran**\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
