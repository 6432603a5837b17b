"""The claims of the orvieto2021 chapter, each declared once (its threshold written only here), and
their evaluation by the verdict engine (:mod:`curvnb.claims`) on the results of
:mod:`curvnb.studies.orvieto2021.compute`.
"""
from __future__ import annotations

import math

import numpy as np

from curvnb.claims import ClaimSpec, Result, evaluate
from curvnb.init_stats import CHAIN_LOG_MEAN, balanced_escape_theory, log_ratio_per_layer
from curvnb.studies.orvieto2021.compute import STREAMS, Config

LN10 = math.log(10.0)
#: gradient-slope: the (activation, width) of each tested slope, and the depths it is fitted over.
SLOPE_PARTS = (("relu", 16), ("linear", 4), ("relu", 64))
SLOPE_DEPTHS = (8, 16, 32, 64)
#: relu-collapse: the tested widths (width 8 is reported, not tested: errata).
COLLAPSE_WIDTHS = (16, 32, 64)
ABSTRACT = "Abstract"


def _medians(groups) -> np.ndarray:
    """(groups, ...): the median of each group over its last axis (the units)."""
    return np.stack([np.median(g, axis=-1) for g in groups])


def slope(depths, medians: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``medians`` (depths first, any batch axes after) against ``depths``."""
    x = np.asarray(depths, float)
    xc = (x - x.mean()).reshape((-1,) + (1,) * (np.ndim(medians) - 1))
    return (xc * (medians - np.mean(medians, axis=0))).sum(axis=0) / float((xc ** 2).sum())


def _worst_slope_error(*logs):
    """Largest |slope/theory − 1| over :data:`SLOPE_PARTS` (groups: each part's depths in order)."""
    m = len(SLOPE_DEPTHS)
    errors = [np.abs(slope(SLOPE_DEPTHS, _medians(logs[i * m:(i + 1) * m])) * LN10 / log_ratio_per_layer(d, act) - 1)
              for i, (act, d) in enumerate(SLOPE_PARTS)]
    return np.max(np.stack(errors), axis=0)


def _span_of_medians(*logs):
    meds = _medians(logs)
    return meds.max(axis=0) - meds.min(axis=0)


def _drop_of_medians(*logs):
    """Median over widths of the L/d = 1 medians minus that of the L/d = 2 medians (first half, second half)."""
    k = len(logs) // 2
    return np.median(_medians(logs[:k]), axis=0) - np.median(_medians(logs[k:]), axis=0)


def per_chain_spread(*hits) -> np.ndarray:
    """Per chain: max/min − 1 of its hitting steps over the loss scales (a hit before one step counts as
    one step). Adam's invariance is per chain, so each chain is one unit of the test."""
    h = np.stack([np.asarray(x, float) for x in hits])
    return h.max(axis=0) / np.maximum(h.min(axis=0), 1.0) - 1


def _success_ratio(small, large):
    return np.mean(small, axis=-1) / np.mean(large, axis=-1)


# Intervals as the range of a statistic over the box of the groups' simultaneous exact intervals
# (curvnb.stats.simultaneous_intervals): ≥ 95 % coverage by construction. The percentile bootstrap of
# a span of near-equal medians is biased upward (it covered the truth 79.5 % of the time in simulation on
# the book's units), and that of a ratio of two small success rates 92.8 %.
def _span_bounds(lower, upper):
    return max(0.0, lower.max() - upper.min()), upper.max() - lower.min()


def _success_ratio_bounds(lower, upper):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (lower[0] / upper[1] if upper[1] > 0 else np.inf,
                upper[0] / lower[1] if lower[1] > 0 else np.inf)


def _spec(id: str, statement: str, statistic: str, direction: str, threshold: float, quantity: str, **kw) -> ClaimSpec:
    """A claim of this chapter: all rules changed with the move to the engine (see the Changes page)."""
    kw.setdefault("unit", "network")
    return ClaimSpec(id=id, statement=statement, statistic=statistic, direction=direction, threshold=threshold,
                     quantity=quantity, source=kw.pop("source", ABSTRACT), changed=f"orvieto2021-{id}", **kw)


SPECS: tuple[ClaimSpec, ...] = (
    _spec("chain-median", "neural chain: the median |∏w| is exp(−0.635 L) (within a factor 3)", "median", "agreement",
          0.0, "ln(median |∏w| / exp(−0.635 L))", delta=math.log(3), unit="chain",
          source="Abstract: the typical (median) gradient vanishes while the mean is preserved"),
    _spec("chain-rare", "neural chain: ∏w² rarely exceeds 1 although E ∏w² = 1", "proportion", "less", 0.01,
          "fraction of chains with ∏w² > 1", unit="chain",
          source="Abstract: the typical (median) gradient vanishes while the mean is preserved"),
    _spec("gradient-slope", "median log₁₀‖∂ℓ/∂W₁‖² falls linearly in L with slope E ln(layer ratio)/ln 10 "
          "(ReLU/He d=16 and d=64, linear/Xavier d=4; L = 8…64)", "custom", "less", 0.4,
          "largest |slope/theory − 1| of the three", function=_worst_slope_error, design="paired",
          source="Abstract: vanishing gradients when d = o(L), even with Xavier/He init"),
    _spec("relu-collapse-span1", "ReLU/He at L/d = 1: the median first-layer gradient is the same for d = 16, 32, 64",
          "custom", "less", 0.3, "span of the three medians of log₁₀‖∂ℓ/∂W₁‖²", physical_unit="decades",
          function=_span_of_medians, design="paired", method="simultaneous-order-statistic", bounds=_span_bounds,
          groups=3,
          source="Abstract: the median gradient decays exponentially in L/d"),
    _spec("relu-collapse-span2", "ReLU/He at L/d = 2: the median first-layer gradient is the same for d = 16, 32, 64",
          "custom", "less", 0.3, "span of the three medians of log₁₀‖∂ℓ/∂W₁‖²", physical_unit="decades",
          function=_span_of_medians, design="paired", method="simultaneous-order-statistic", bounds=_span_bounds,
          groups=3,
          source="Abstract: the median gradient decays exponentially in L/d"),
    _spec("relu-collapse-drop", "ReLU/He: the median first-layer gradient drops from L/d = 1 to L/d = 2",
          "custom", "greater", 0.8, "median over widths at L/d = 1 minus at L/d = 2", physical_unit="decades",
          function=_drop_of_medians, design="paired",
          source="Abstract: the median gradient decays exponentially in L/d"),
    _spec("hessian-vanishes", "linear/Xavier width 4: the top |λ| of the Hessian at init vanishes with depth "
          "(L = 64 vs L = 8)", "ratio_of_medians_paired", "less", 1e-2, "median max|λ| at L = 64 / at L = 8",
          labels=("L = 64", "L = 8"), source="Abstract: Hessian eigenvalues at init vanish as networks grow deeper"),
    _spec("balanced-escape-gd", "balanced chain L = 6: GD's escape time is w0^−(L−2)/((L−2)η)", "value", "less",
          0.15, "largest |GD steps / theory − 1| over w0", unit="run",
          source="Abstract: SGD's escape time from the flat plateau grows as the curvature vanishes"),
    _spec("balanced-escape-adam", "balanced chain L = 6: Adam's escape time barely depends on w0", "value", "less",
          2.0, "Adam steps, max/min over w0", unit="run",
          source="Abstract: adaptive methods escape the plateau quickly"),
    _spec("rescaling-adam", "random chains L = 8: Adam with tiny ε reaches loss < 0.25 at the same step for loss "
          "scales c = 1, 1e-2, 1e-4", "median", "less", 0.05,
          "median over chains of the spread of its hitting steps (max/min − 1)", kind="check", unit="chain",
          source="Abstract: adaptive steps do not scale with the curvature (an algebraic invariance)"),
    _spec("rescaling-gd", "random chains L = 8: GD's success collapses as the loss scale shrinks (GD on c·ℓ is GD "
          "with step c·η)", "custom", "less", 0.2, "success rate at c = 1e-4 / at c = 1", kind="check", unit="chain",
          function=_success_ratio, design="paired", method="simultaneous-clopper-pearson",
          bounds=_success_ratio_bounds, groups=2,
          source="Abstract: the escape time scales with the curvature (an algebraic invariance)"),
    _spec("mlp-sgd-stalls", "deep narrow ReLU MLP: plain SGD stalls (final cross-entropy ≥ 1.5 nats)", "median",
          "greater", 1.5, "median final training cross-entropy, plain SGD", physical_unit="nats",
          source="Abstract: Adam and residual connections (with normalisation) restore trainability"),
    _spec("mlp-adam-trains", "deep narrow ReLU MLP: Adam ends ≥ 0.5 nats below plain SGD",
          "median_of_differences",
          "greater", 0.5, "median over nets of (CE plain SGD − CE Adam)", physical_unit="nats",
          labels=("plain SGD", "plain Adam"),
          source="Abstract: Adam and residual connections (with normalisation) restore trainability"),
    _spec("mlp-residual-beats-plain", "deep narrow ReLU MLP: residual SGD ends ≥ 1 nat below plain SGD",
          "median_of_differences", "greater", 1.0, "median over nets of (CE plain SGD − CE residual SGD)",
          physical_unit="nats", labels=("plain SGD", "residual SGD"),
          source="Abstract: Adam and residual connections (with normalisation) restore trainability"),
    _spec("mlp-residual-trains", "deep narrow ReLU MLP: residual SGD trains (final cross-entropy < 0.5 nats)",
          "median", "less", 0.5, "median final training cross-entropy, residual SGD", physical_unit="nats",
          source="Abstract: Adam and residual connections (with normalisation) restore trainability"),
    _spec("mlp-residual-bn-trains", "deep narrow ReLU MLP: residual+BN SGD trains (final cross-entropy < 0.5 nats)",
          "median", "less", 0.5, "median final training cross-entropy, residual+BN SGD", physical_unit="nats",
          source="Abstract: Adam and residual connections (with normalisation) restore trainability"),
    _spec("mlp-residual-gradient", "deep narrow ReLU MLP at init: residual branches raise the first-layer gradient "
          "≥ 10³-fold", "ratio_of_medians_paired", "greater", 1e3, "median ‖∂ℓ/∂W₁‖², residual / plain",
          labels=("residual", "plain"),
          source="Abstract: residual connections restore the gradient"),
    _spec("mlp-residual-bn-gradient", "deep narrow ReLU MLP at init: residual + BatchNorm raises the first-layer "
          "gradient ≥ 30-fold", "ratio_of_medians_paired", "greater", 30.0, "median ‖∂ℓ/∂W₁‖², residual+BN / plain",
          labels=("residual+BN", "plain"),
          source="Abstract: residual connections (with normalisation) restore the gradient"),
)
SPEC = {s.id: s for s in SPECS}


def _log10(a) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(np.asarray(a, float))


def _finite_rows(groups, what: str) -> tuple[list[np.ndarray], dict]:
    """Paired groups restricted to the units finite in every group; the others go to ``detail``."""
    ok = np.all([np.isfinite(g) for g in groups], axis=0)
    detail = {} if ok.all() else {f"{what} left out (not finite)": int((~ok).sum())}
    return [np.asarray(g)[ok] for g in groups], detail


def _boot(seed: int, spec: ClaimSpec) -> int:
    return STREAMS.seed(seed, "bootstrap", SPECS.index(spec))


def _evaluate(spec: ClaimSpec, groups, seed: int, what: str, detail: dict | None = None) -> Result:
    data, left = _finite_rows(groups, what)
    boot = _boot(seed, spec) if spec.interval_method == "bootstrap" else None
    return evaluate(spec, *data, seed=boot, detail={**(detail or {}), **left})


def chain_results(results: dict, config: Config, seed: int) -> list[Result]:
    L = config.chain_claim_depth
    logs = np.asarray(results["chain"][L][:config.chain_units])
    detail = {"depth L": L, "sample mean ∏w² (all chains)": float(np.mean(np.exp(2 * results["chain"][L])))}
    return [evaluate(SPEC["chain-median"], logs - CHAIN_LOG_MEAN * L, detail=detail),
            evaluate(SPEC["chain-rare"], (logs > 0).astype(float))]


def gradient_results(results: dict, config: Config, seed: int) -> list[Result]:
    gf = results["grad_first"]
    slopes = [_log10(gf[(act, d, L)]) for act, d in SLOPE_PARTS for L in SLOPE_DEPTHS]
    m = len(SLOPE_DEPTHS)
    detail = {f"slope {act} d={d} (theory {log_ratio_per_layer(d, act) / LN10:.4f})":
              float(slope(SLOPE_DEPTHS, _medians(slopes[i * m:(i + 1) * m]))) for i, (act, d) in enumerate(SLOPE_PARTS)}
    at1 = [_log10(gf[("relu", d, d)]) for d in COLLAPSE_WIDTHS]
    at2 = [_log10(gf[("relu", d, 2 * d)]) for d in COLLAPSE_WIDTHS]
    reported = {f"d={d} (reported, not tested): medians at L/d = 1, 2":
                [float(np.median(_log10(gf[("relu", d, r * d)]))) for r in (1, 2)]
                for d in config.relu_widths if d not in COLLAPSE_WIDTHS and ("relu", d, 2 * d) in gf}
    medians = {"medians at L/d = 1": dict(zip(map(str, COLLAPSE_WIDTHS), _medians(at1).tolist())),
               "medians at L/d = 2": dict(zip(map(str, COLLAPSE_WIDTHS), _medians(at2).tolist()))}
    return [_evaluate(SPEC["gradient-slope"], slopes, seed, "nets", detail),
            _evaluate(SPEC["relu-collapse-span1"], at1, seed, "nets", reported),
            _evaluate(SPEC["relu-collapse-span2"], at2, seed, "nets"),
            _evaluate(SPEC["relu-collapse-drop"], at1 + at2, seed, "nets", medians)]


def hessian_results(results: dict, config: Config, seed: int) -> list[Result]:
    lo, hi = config.hessian_claim_depths
    ht = results["hessian_top"]
    return [_evaluate(SPEC["hessian-vanishes"], (ht[hi], ht[lo]), seed, "nets",
                      {f"median max|λ| at L = {L}": float(np.median(ht[L])) for L in (lo, hi)})]


def escape_results(results: dict, config: Config, seed: int) -> list[Result]:
    esc, w0s = results["balanced"], config.balanced_w0
    gd = {w0: esc["gd"][(w0, config.gd_lr)] for w0 in w0s}
    theory = {w0: balanced_escape_theory(config.balanced_depth, w0, config.gd_lr) for w0 in w0s}
    adam = {w0: esc["adam"][(w0, config.adam_lr)] for w0 in w0s}
    rs = results["rescale"]
    scales = [c for c in config.rescale_scales if c >= 1e-4]
    gd_success = {f"c={c:g}": float(np.isfinite(rs[("gd", c)]).mean()) for c in config.rescale_scales}
    hits, never = _finite_rows([rs[("adam", c)] for c in scales], "chains never hitting")
    return [evaluate(SPEC["balanced-escape-gd"], max(abs(gd[w] / theory[w] - 1) for w in w0s),
                     detail={"GD steps": gd, "theory": theory}),
            evaluate(SPEC["balanced-escape-adam"], max(adam.values()) / min(adam.values()),
                     detail={"Adam steps": adam}),
            evaluate(SPEC["rescaling-adam"], per_chain_spread(*hits), detail=never),
            _evaluate(SPEC["rescaling-gd"], [np.isfinite(rs[("gd", min(scales))]).astype(float),
                                             np.isfinite(rs[("gd", 1.0)]).astype(float)], seed, "chains",
                      {"GD success rate": gd_success})]


def mlp_results(results: dict, config: Config, seed: int) -> list[Result]:
    tr = results["training"]
    final = {cond: np.asarray(c)[-1] for cond, c in tr["curves"].items()}
    sgd, adam, res, rbn = (final[c] for c in (("plain", "sgd"), ("plain", "adam"), ("residual", "sgd"),
                                                ("residual+BN", "sgd")))
    rates = {f"{a} {o} rate (selected)": lr for (a, o), lr in tr["selected"].items()}
    ag = results["arch_grad"]
    g = {k: ag[(k, config.mlp_depth)] for k in ("plain", "residual", "residual+BN")}
    return [_evaluate(SPEC["mlp-sgd-stalls"], [sgd], seed, "diverged nets", rates),
            _evaluate(SPEC["mlp-adam-trains"], [sgd, adam], seed, "diverged nets"),
            _evaluate(SPEC["mlp-residual-beats-plain"], [sgd, res], seed, "diverged nets"),
            _evaluate(SPEC["mlp-residual-trains"], [res], seed, "diverged nets"),
            _evaluate(SPEC["mlp-residual-bn-trains"], [rbn], seed, "diverged nets"),
            _evaluate(SPEC["mlp-residual-gradient"], [g["residual"], g["plain"]], seed, "nets"),
            _evaluate(SPEC["mlp-residual-bn-gradient"], [g["residual+BN"], g["plain"]], seed, "nets")]


def claim_results(results: dict, config: Config, seed: int) -> list[Result]:
    """Every claim of the chapter, in the order of :data:`SPECS`, decided by the engine."""
    out = []
    for part in (chain_results, gradient_results, hessian_results, escape_results, mlp_results):
        out += part(results, config, seed)
    assert [r.id for r in out] == [s.id for s in SPECS]
    return out


def units(config: Config) -> dict[str, int]:
    """Units per claim that ``config`` gives (from the configuration alone, before any run)."""
    n = {"chain-median": config.chain_units, "chain-rare": config.chain_units, "hessian-vanishes": config.hessian_seeds,
         "balanced-escape-gd": 1, "balanced-escape-adam": 1, "rescaling-adam": config.rescale_seeds,
         "rescaling-gd": config.rescale_seeds, "mlp-residual-gradient": config.arch_seeds,
         "mlp-residual-bn-gradient": config.arch_seeds}
    n.update({s.id: config.grad_seeds for s in SPECS if s.id.startswith(("gradient", "relu"))})
    n.update({s.id: config.mlp_seeds for s in SPECS if s.id.startswith("mlp-") and s.id not in n})
    return n
