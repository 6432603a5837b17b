"""The claims of the huh2020 chapter, each declared once (its threshold is written only here), and their
evaluation by the verdict engine (:func:`curvnb.claims.evaluate`) over a result of
:mod:`curvnb.studies.huh2020.compute`. Report code: editing it reuses every cached result.

Exact statements (closed forms, numerical identities under their precondition) are deterministic
values against a tolerance: the largest error over every seed. Statements about a typical seed are
statistics over seeds with a 95 % interval (medians: exact order statistics; proportions:
Clopper–Pearson), judged by the one rule: reproduced / not reproduced / inconclusive.
"""
from __future__ import annotations

import numpy as np

from curvnb.claims import ClaimSpec, Result, evaluate
from curvnb.studies.huh2020.compute import Config

_RUN = "huh2020"   # prefix of this chapter's anchors on the book's Changes page

SAXE = ClaimSpec(
    id="1-closed-forms", kind="check", source="Saxe et al. (2014) closed form",
    statement="Integrated 1 × 1 matrix flows match the Saxe closed form (d = 2, s ∈ {1, 2}, w₀ = 1e-3)",
    statistic="value", direction="less", threshold=1e-4, quantity="max |w_sim − w_Saxe|", changed=f"{_RUN}-claim-1")
QUADRATURE = ClaimSpec(
    id="1b-quadrature", kind="check", source="our mode equations",
    statement="At d = 3 the integrated 1 × 1 matrix flows reach s/2 at the quadrature time of the mode equation "
              "(all five rules, w₀ = 1e-3 and 1e-6)",
    statistic="value", direction="less", threshold=0.01, quantity="max |t_sim/t_quad − 1|",
    changed=f"{_RUN}-claim-1")
MAPS = ClaimSpec(
    id="2-matrix-closed-forms", kind="paper",
    source="abstract: curvature correction accelerates convergence of the input–output map",
    statement="n = 4, d = 3, Gaussian init × 0.3/√n: NGD's map obeys W(t) − S = (W₀ − S)·exp(−t) up to t = 3 and "
              "block NGD's obeys (W₀ − S)·exp(−3t) wherever its flow is defined — up to t = 3 on seeds drawn under "
              "the precondition that this path stays nonsingular, up to the time its flow reached on the others",
    statistic="value", direction="less", threshold=1e-6, unit="seed",
    quantity="largest |W(t) − closed form| over every seed (∞ if a flow that must reach t = 3 stopped)",
    changed=f"{_RUN}-claim-2")
SINGULAR = ClaimSpec(
    id="2b-singular-block-flows", kind="paper",
    source="abstract: block-diagonal NGD compromises the stability of the parameter dynamics",
    statement="From Gaussian init × 0.3/√n, in more than 5 % of seeds block NGD's parameter flow becomes singular "
              "or stiff before t = 3 while GD, NGD, full α=½ and block α=½ all reach t = 3",
    statistic="proportion", direction="greater", threshold=0.05,
    quantity="fraction of seeds where only block NGD's flow stopped", changed=f"{_RUN}-claim-2b")
PREDICTED = ClaimSpec(
    id="2c-singularity-predicted", kind="check", source="our derivation (block NGD's map moves on a straight path)",
    statement="Block NGD's flow stops before t = 3 exactly on the seeds whose closed-form path passes a singular "
              "matrix before t = 3 (a real eigenvalue λ ≤ 0 of S⁻¹W₀, at t* = ln(1 − λ)/3), and at t* "
              "(within 1 % + 1e-6)",
    statistic="value", direction="less", threshold=1.0, quantity="seeds that disagree",
    changed=f"{_RUN}-claim-2c")
CONSERVED = ClaimSpec(
    id="3-conservation-law", kind="paper", source="abstract: a generalized conservation law",
    statement="Cᵢ = Wᵢ₊₁ᵀWᵢ₊₁ − WᵢWᵢᵀ is conserved by GD, NGD and full α=½ up to t = 3",
    statistic="value", direction="less", threshold=1e-6,
    quantity="largest drift of Cᵢ over every seed and conserving rule", changed=f"{_RUN}-claim-3")
NOT_CONSERVED = ClaimSpec(
    id="3b-block-breaks-conservation", kind="paper", source="abstract: a generalized conservation law",
    statement="Block NGD does not conserve Cᵢ: on seeds drawn under the precondition (its flow defined up to t = 3) "
              "the median drift by t = 3 is above 1",
    statistic="median", direction="greater", threshold=1.0, quantity="median block-NGD drift of Cᵢ by t = 3",
    changed=f"{_RUN}-claim-3")
SAME_PATH = ClaimSpec(
    id="4-same-path", kind="paper", source="abstract: NGD keeps GD's path and changes only the speed along it",
    statement="Scalar d = 2 from a₀ = (0.05, 0.2): GD, NGD and full α=½ end at the same point; block NGD ends on "
              "the ray a₂/a₁ = 4 at (0.5, 2.0)",
    statistic="value", direction="less", threshold=1e-4,
    quantity="larger of the endpoint distance to GD and block NGD's distance to (0.5, 2)")
TIMES = ClaimSpec(
    id="5-learning-times", kind="paper", source="abstract: fractional correction keeps most of the acceleration",
    statement="d = 3, s = 1, w₀ = 1e-3: time to s/2 is GD 9.14, NGD 0.692, full α=½ 1.45, block α=½ 0.838, "
              "block NGD 0.231 (units of τ)",
    statistic="value", direction="less", threshold=0.03, quantity="max |t/t_ref − 1|")
PLATEAU = ClaimSpec(
    id="5b-plateau", kind="paper", source="abstract and talk: small initialisations give GD a plateau",
    statement="From w₀ = 1e-3 to 1e-6 (d = 3, s = 1) GD's time to s/2 grows at least 10×",
    statistic="value", direction="greater", threshold=10.0, quantity="GD's growth factor",
    changed=f"{_RUN}-claim-5b")
NO_PLATEAU = ClaimSpec(
    id="5c-fractional-no-plateau", kind="paper",
    source="abstract and talk: fractional correction removes the plateau of small initialisations",
    statement="From w₀ = 1e-3 to 1e-6 the times of full and block α=½ grow less than 15 %",
    statistic="value", direction="less", threshold=1.15, quantity="larger α=½ growth factor",
    changed=f"{_RUN}-claim-5b")
NGD_FLAT = ClaimSpec(
    id="5d-ngd-no-plateau", kind="paper", source="abstract: NGD's learning time does not depend on the init",
    statement="From w₀ = 1e-3 to 1e-6 the times of NGD and block NGD change less than 1 %",
    statistic="value", direction="less", threshold=0.01, quantity="max |growth − 1| of NGD and block NGD",
    changed=f"{_RUN}-claim-5b")
#: Claim 6's per-seed conditions (a seed counts when all hold): block NGD's largest step above BLOCK_STEP_MIN and
#: STEP_RATIO_MIN× block α=½'s; block α=½'s final max/min ‖W_i‖ ≤ HALF_NORM_RATIO_MAX, steps < HALF_STEP_MAX,
#: final loss < HALF_LOSS_MAX.
BLOCK_STEP_MIN, STEP_RATIO_MIN, HALF_NORM_RATIO_MAX, HALF_STEP_MAX, HALF_LOSS_MAX = 10.0, 100.0, 1.05, 0.1, 1e-10
UNSTABLE = ClaimSpec(
    id="6-block-instability", kind="paper",
    source="abstract: block-diagonal NGD is unstable, fractional correction fixes it",
    statement=f"Discrete steps from small init (n = 4, d = 3): in a typical seed (more than half of them) block NGD "
              f"takes a step > {BLOCK_STEP_MIN:g} and ≥ {STEP_RATIO_MIN:g}× block α=½'s largest step, while block "
              f"α=½ keeps max/min ‖W_i‖ ≤ {HALF_NORM_RATIO_MAX:g}, every step < {HALF_STEP_MAX:g} and reaches loss "
              f"< {HALF_LOSS_MAX:g}",
    statistic="proportion", direction="greater", threshold=0.5,
    quantity="fraction of seeds where every condition holds", changed=f"{_RUN}-claim-6")
IMBALANCE = ClaimSpec(
    id="6b-block-imbalance", kind="paper",
    source="abstract: block-diagonal NGD compromises the stability of the parameter dynamics",
    statement="… and block NGD's final max/min ‖W_i‖ has median over seeds ≥ 1.5",
    statistic="median", direction="greater", threshold=1.5, quantity="median block-NGD final max/min ‖W_i‖",
    changed=f"{_RUN}-claim-6")
GENERALIZATION = ClaimSpec(
    id="7-generalization", kind="paper", source="abstract: curvature correction can hurt generalization",
    statement="Noisy teacher (n = 16, d = 3, s = (3, 2, 1), σ = 0.1): the median over seeds of NGD's / GD's best "
              "test error over time is > 1.5",
    statistic="median_of_ratios", direction="greater", threshold=1.5,
    quantity="median NGD / GD best test error", labels=("NGD", "GD"), changed=f"{_RUN}-claim-7")
HALF_ABOVE_GD = ClaimSpec(
    id="7b-half-above-gd", kind="paper", source="abstract: fractional correction trades speed for generalization",
    statement="… and block α=½'s best test error lies above GD's: median over seeds of block α=½ / GD > 1",
    statistic="median_of_ratios", direction="greater", threshold=1.0,
    quantity="median block α=½ / GD best test error", labels=("block α=½", "GD"), changed=f"{_RUN}-claim-7")
HALF_BELOW_NGD = ClaimSpec(
    id="7c-half-below-ngd", kind="paper", source="abstract: fractional correction trades speed for generalization",
    statement="… and below NGD's: median over seeds of block α=½ / NGD < 1",
    statistic="median_of_ratios", direction="less", threshold=1.0,
    quantity="median block α=½ / NGD best test error", labels=("block α=½", "NGD"), changed=f"{_RUN}-claim-7")

SPECS = (SAXE, QUADRATURE, MAPS, SINGULAR, PREDICTED, CONSERVED, NOT_CONSERVED, SAME_PATH, TIMES, PLATEAU,
         NO_PLATEAU, NGD_FLAT, UNSTABLE, IMBALANCE, GENERALIZATION, HALF_ABOVE_GD, HALF_BELOW_NGD)
SINGULAR_TIME_RTOL, SINGULAR_TIME_ATOL = 0.01, 1e-6   # check 2c: "at t*" means within 1 % of t* + 1e-6


def units(config: Config) -> dict[str, int]:
    """Independent units each statistical claim gets under ``config`` (from the config, before any run)."""
    return {SINGULAR.id: config.matrix_seeds, NOT_CONSERVED.id: config.conditioned_seeds,
            UNSTABLE.id: config.discrete_seeds, IMBALANCE.id: config.discrete_seeds,
            GENERALIZATION.id: config.gen_seeds, HALF_ABOVE_GD.id: config.gen_seeds, HALF_BELOW_NGD.id: config.gen_seeds}


def _mode_claims(modes: dict, scalar: dict) -> list[Result]:
    """Checks 1, 1b and claims 4, 5, 5b–5d: deterministic single-mode and scalar computations."""
    times = modes["times"]
    quad = max(max(abs(v["simulated"] / v["quadrature"] - 1), abs(v["plateau_simulated"] / v["plateau_quadrature"] - 1))
               for v in times.values())
    end = scalar["endpoints"]
    same = max(np.abs(np.subtract(end[k], end["GD"])).max() for k in ("NGD", "full α=½"))
    ray = float(np.abs(np.subtract(end["block NGD"], [0.5, 2.0])).max())
    growth = {k: v["plateau_simulated"] / v["simulated"] for k, v in times.items()}
    return [
        evaluate(SAXE, max(v["max_error"] for v in modes["saxe"].values())),
        evaluate(QUADRATURE, quad),
        evaluate(SAME_PATH, max(same, ray), detail={"endpoint difference to GD": same,
                                                    "block NGD distance to (0.5, 2)": ray, "GD endpoint": end["GD"]}),
        evaluate(TIMES, max(abs(v["simulated"] / v["reference"] - 1) for v in times.values()),
                 detail={f"{k} time to s/2": v["simulated"] for k, v in times.items()}),
        evaluate(PLATEAU, growth["GD"], detail={f"{k} growth": v for k, v in growth.items()}),
        evaluate(NO_PLATEAU, max(growth["full α=½"], growth["block α=½"])),
        evaluate(NGD_FLAT, max(abs(growth[k] - 1) for k in ("NGD", "block NGD"))),
    ]


def _matrix_claims(matrix: dict, config: Config) -> list[Result]:
    """Claims 2, 2b, 3, 3b and check 2c: the integrated matrix flows."""
    rules, cond, horizon = matrix["rules"], matrix["conditioned"], config.horizon
    ngd_ok = rules["NGD"]["reached"] >= horizon
    errors = [np.where(ngd_ok, rules["NGD"]["closed_form_error"], np.inf), rules["block NGD"]["closed_form_error"],
              np.where(cond["reached"] >= horizon, cond["closed_form_error"], np.inf)]
    reached = rules["block NGD"]["reached"]
    stopped = reached < horizon
    others = np.all([rules[k]["reached"] >= horizon for k in ("GD", "NGD", "full α=½", "block α=½")], axis=0)
    predicted = matrix["predicted_singular_time"]
    gap = np.abs(reached - predicted)
    agree = (stopped == (predicted < horizon)) & (~stopped | (gap <= SINGULAR_TIME_RTOL * predicted + SINGULAR_TIME_ATOL))
    conserving = {k: np.where(rules[k]["reached"] >= horizon, rules[k]["drift"], np.inf)
                  for k in ("GD", "NGD", "full α=½")}
    defined = cond["reached"] >= horizon
    order = np.argsort(config.drift_scales)[::-1]
    return [
        evaluate(MAPS, float(max(e.max() for e in errors)),
                 detail={"NGD max error": float(errors[0].max()), "block NGD, unconditioned (to the time reached)":
                         float(errors[1].max()), "block NGD, precondition seeds (to t = 3)": float(errors[2].max()),
                         "seeds": f"{config.matrix_seeds} unconditioned + {config.conditioned_seeds} precondition "
                                  f"(drawn from {cond['candidates']} candidates)"}),
        evaluate(SINGULAR, stopped & others, detail={"block NGD stopped": f"{int(stopped.sum())}/{len(stopped)}",
                                                     "other four rules reached t = 3": f"{int(others.sum())}/{len(others)}"}),
        evaluate(PREDICTED, float((~agree).sum()),
                 detail={"predicted singular before t = 3": f"{int((predicted < horizon).sum())}/{len(predicted)}",
                         "stopped before t = 3": f"{int(stopped.sum())}/{len(stopped)}"}),
        evaluate(CONSERVED, float(max(v.max() for v in conserving.values())),
                 detail={f"{k} max drift": float(v.max()) for k, v in conserving.items()}),
        evaluate(NOT_CONSERVED, cond["drift"][defined],
                 detail={"precondition seeds whose flow did not reach t = 3 (left out)": int((~defined).sum()),
                         "block α=½ median drift by init scale (proportional to it by construction; no evidence)":
                             {f"{s:g}": float(np.nanmedian(d)) for s, d in
                              zip(np.asarray(config.drift_scales)[order], matrix["block_half_drift_by_scale"][order])}}),
    ]


def _discrete_claims(discrete: dict) -> list[Result]:
    """Claims 6 and 6b: discrete steps."""
    bngd, bhalf = discrete["block NGD"], discrete["block α=½"]
    with np.errstate(invalid="ignore", divide="ignore"):
        holds = ((bngd["max_step"] > BLOCK_STEP_MIN) & (bngd["max_step"] >= STEP_RATIO_MIN * bhalf["max_step"])
                 & (bhalf["norm_ratio"] <= HALF_NORM_RATIO_MAX) & (bhalf["max_step"] < HALF_STEP_MAX)
                 & (bhalf["final_loss"] < HALF_LOSS_MAX))
    finite = np.isfinite(bngd["norm_ratio"])
    return [
        evaluate(UNSTABLE, holds, detail={"block NGD runs that diverged": int((bngd["diverged_at"] >= 0).sum()),
                                          "block α=½ max step": float(bhalf["max_step"].max()),
                                          "block α=½ max final loss": float(bhalf["final_loss"].max())}),
        evaluate(IMBALANCE, bngd["norm_ratio"][finite],
                 detail={"block NGD runs left out (not finite)": int((~finite).sum()),
                         **{f"{k} median final max/min ‖W_i‖": float(np.median(discrete[k]["norm_ratio"]))
                            for k in ("GD", "NGD", "block α=½")}}),
    ]


def claims(results: dict, config: Config) -> list[Result]:
    """Every claim of the chapter evaluated on ``results`` (the order of :data:`SPECS`)."""
    gen = {k: np.asarray(v["min_test"]) for k, v in results["generalization"].items()}
    out = (_mode_claims(results["modes"], results["scalar"]) + _matrix_claims(results["matrix"], config)
           + _discrete_claims(results["discrete"])
           + [evaluate(GENERALIZATION, gen["NGD"], gen["GD"]), evaluate(HALF_ABOVE_GD, gen["block α=½"], gen["GD"]),
              evaluate(HALF_BELOW_NGD, gen["block α=½"], gen["NGD"])])
    by_id = {r.id: r for r in out}
    return [by_id[s.id] for s in SPECS]
