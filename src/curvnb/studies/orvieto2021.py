"""Vanishing curvature at random initialisation (Orvieto et al., 2021/2022).

Deep networks whose width grows slower than their depth have, *typically* (in median), gradients
and Hessian eigenvalues that shrink exponentially in L/d at Xavier/He init, although the *mean*
squared signal is preserved. GD's time to escape the resulting plateau scales like 1/curvature;
Adam's does not; residual branches (with or without BatchNorm) restore the gradient.
All logic lives in :mod:`curvnb.init_stats` and :mod:`curvnb.models.mlp`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from curvnb.claims import Claim
from curvnb.init_stats import (CHAIN_LOG_MEAN, balanced_escape_theory, chain_descent, chain_log_products,
                               hessian_spectrum_at_init, hessian_top_at_init, layer_grad_norms, log_ratio_per_layer,
                               train_classifier)
from curvnb.models.mlp import deep_mlp

TITLE = "Vanishing curvature at initialisation"
COST = {"quick": "≈1–2 min on 2 CPU cores", "full": "≈20 min (CPU or GPU; Fashion-MNIST from data/fashion-mnist)"}
LN10 = math.log(10.0)


@dataclass(frozen=True)
class Config:
    # F1 / claim 1: the neural chain
    chain_depths: tuple[int, ...] = (5, 10, 20, 50)
    chain_samples: int = 200_000
    chain_claim_depth: int = 20
    # F2 / claims 2-3: first-layer gradient at init (d_in, n examples, MSE to N(0,1) targets)
    grad_depths: tuple[int, ...] = (8, 16, 32, 64, 128)
    relu_widths: tuple[int, ...] = (8, 16, 32, 64)
    linear_widths: tuple[int, ...] = (4, 16, 64)
    grad_seeds: int = 30
    d_in: int = 16
    n: int = 64
    # F3 / claim 4: Hessian at init (linear/Xavier)
    hessian_width: int = 4
    hessian_depths: tuple[int, ...] = (8, 16, 32, 64)
    hessian_seeds: int = 10
    spectrum_depths: tuple[int, ...] = (4, 8, 16)
    spectrum_width: int = 4
    # F4 / claims 5-6: escape times on the chain
    balanced_depth: int = 6
    balanced_w0: tuple[float, ...] = (0.5, 0.3, 0.2)
    gd_lr: float = 0.1
    gd_lr_grid: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4)
    adam_lr: float = 0.01
    adam_lr_grid: tuple[float, ...] = (0.003, 0.01, 0.03)
    escape_steps: int = 10_000
    rescale_depth: int = 8
    rescale_seeds: int = 100
    rescale_scales: tuple[float, ...] = (1.0, 1e-2, 1e-4, 1e-8)
    rescale_steps: int = 3000
    adam_tiny_eps: float = 1e-30
    # F4-F5 / claim 7: deep narrow MLP on a real classification task
    dataset: str = "digits"  # "digits" (ships with scikit-learn) or "fashion-mnist" (local folder)
    train_size: int = 0  # 0: the whole training split
    mlp_depth: int = 32
    mlp_width: int = 16
    batch_size: int = 128
    train_steps: int = 600
    sgd_lrs: tuple[float, ...] = (0.03, 0.1, 0.3)
    adam_lrs: tuple[float, ...] = (1e-3,)
    arch_depths: tuple[int, ...] = (8, 16, 32, 64)
    arch_seeds: int = 10
    arch_examples: int = 0  # examples for the gradient at init (0: the whole training set)


PROFILES = {
    "quick": Config(),
    "full": Config(chain_samples=2_000_000, grad_depths=(8, 16, 32, 64, 128, 256), relu_widths=(8, 16, 32, 64, 128),
                   linear_widths=(4, 16, 64, 128), grad_seeds=200, hessian_seeds=50, hessian_depths=(8, 16, 32, 64, 128),
                   rescale_seeds=1000, dataset="fashion-mnist", train_size=10_000, train_steps=3000,
                   sgd_lrs=(0.01, 0.03, 0.1, 0.3, 1.0), adam_lrs=(3e-4, 1e-3, 3e-3), arch_depths=(8, 16, 32, 64, 128),
                   arch_seeds=50, arch_examples=2000),
}


# --------------------------------------------------------------------------- helpers
def _quartiles(a: np.ndarray, axis: int = 0) -> dict:
    with np.errstate(invalid="ignore"):  # dead nets give log10(0) = -inf: a quartile may be -inf
        q1, med, q3 = np.quantile(a, [0.25, 0.5, 0.75], axis=axis)
    return {"q1": q1, "median": med, "q3": q3}


def _log10(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(a)  # exact zeros (dead ReLU nets) become -inf and sort below everything


def load_classification(config: Config, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split of ``config.dataset`` as flat, standardised float32 features and labels."""
    if config.dataset == "digits":
        from curvnb.data import load_digits_split
        x, y, _, _ = load_digits_split(seed=seed)
    elif config.dataset in ("fashion-mnist", "mnist"):
        from curvnb.data.local import load_mnist_like
        x, y, _, _ = load_mnist_like(name=config.dataset)
        x = x.flatten(1)
        x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}: allowed values are 'digits', 'fashion-mnist', 'mnist'")
    if config.train_size:
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:config.train_size]
        x, y = x[idx], y[idx]
    return x, y


# --------------------------------------------------------------------------- computation
def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """Every measurement of the chapter (CPU-sized; ``device`` is used for the MLP training)."""
    from tqdm.auto import tqdm

    out: dict = {}
    base = 1000 * seed
    seeds = [base + s for s in range(config.grad_seeds)]
    # F1: the chain.
    logs = chain_log_products(config.chain_depths + (config.chain_claim_depth,), config.chain_samples, seed=seed)
    out["chain"] = {L: {"log_abs": v, "median_abs": float(np.exp(np.median(v))),
                        "mean_sq": float(np.mean(np.exp(2 * v))), "p_sq_above_1": float(np.mean(v > 0))}
                    for L, v in logs.items()}
    # F2: gradients at init.
    grads = {}
    cells = [("relu", "he", d, L) for d in config.relu_widths for L in config.grad_depths] + \
            [("linear", "xavier", d, L) for d in config.linear_widths for L in config.grad_depths]
    for act, init, d, L in tqdm(cells, desc="gradients at init", leave=False):
        grads[(act, d, L)] = layer_grad_norms(L, d, seeds, activation=act, init=init, d_in=config.d_in, n=config.n)[:, 0]
    out["grad_first"] = grads
    # F3: Hessian at init.
    hseeds = seeds[:config.hessian_seeds]
    out["hessian_top"] = {L: hessian_top_at_init(L, config.hessian_width, hseeds, activation="linear", init="xavier",
                                                 d_in=config.d_in, n=config.n)
                          for L in tqdm(config.hessian_depths, desc="Hessian at init", leave=False)}
    out["spectra"] = {L: hessian_spectrum_at_init(L, config.spectrum_width, seed) for L in config.spectrum_depths}
    # F4: escape on the balanced chain, over learning-rate grids.
    Lb = config.balanced_depth
    gd_lrs = sorted(set(config.gd_lr_grid) | {config.gd_lr})
    adam_lrs = sorted(set(config.adam_lr_grid) | {config.adam_lr})
    esc = {"gd": {}, "adam": {}}
    for w0 in config.balanced_w0:
        w = torch.full((1, Lb), float(w0), dtype=torch.float64)
        for lr in gd_lrs:
            esc["gd"][(w0, lr)] = float(chain_descent(w, lr=lr, steps=config.escape_steps)["hit"][0])
        for lr in adam_lrs:
            esc["adam"][(w0, lr)] = float(chain_descent(w, lr=lr, steps=config.escape_steps, optimizer="adam")["hit"][0])
    out["balanced"] = esc
    out["balanced_curves"] = {w0: {"gd": chain_descent(torch.full((1, Lb), float(w0), dtype=torch.float64), lr=config.gd_lr,
                                                       steps=2000, record=True)["loss"][:, 0],
                                   "adam": chain_descent(torch.full((1, Lb), float(w0), dtype=torch.float64),
                                                         lr=config.adam_lr, steps=2000, optimizer="adam",
                                                         record=True)["loss"][:, 0]}
                              for w0 in config.balanced_w0}
    # F4: loss-rescaling test on random chains (one batched tensor of seeds).
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(config.rescale_seeds, config.rescale_depth, generator=g, dtype=torch.float64)
    rescale = {}
    for c in config.rescale_scales:
        rescale[("gd", c)] = chain_descent(W, lr=config.gd_lr, steps=config.rescale_steps, scale=c)["hit"]
        rescale[("adam", c)] = chain_descent(W, lr=config.adam_lr, steps=config.rescale_steps, scale=c,
                                             optimizer="adam", eps=config.adam_tiny_eps)["hit"]
        rescale[("adam-eps1e-8", c)] = chain_descent(W, lr=config.adam_lr, steps=config.rescale_steps, scale=c,
                                                     optimizer="adam", eps=1e-8)["hit"]
    out["rescale"] = rescale
    # F4-F5: deep narrow MLP on a classification task.
    x, y = load_classification(config, seed)
    x, y = x.to(device), y.to(device)
    variants = {"plain": {}, "residual": {"residual": True}, "residual+BN": {"residual": True, "batchnorm": True},
                "BN": {"batchnorm": True}}
    arch = {}
    xa, ya = (x, y) if not config.arch_examples else (x[:config.arch_examples], y[:config.arch_examples])
    for name, kw in tqdm(list(variants.items()), desc="architectures at init", leave=False):
        for L in config.arch_depths:
            arch[(name, L)] = layer_grad_norms(L, config.mlp_width, range(base, base + config.arch_seeds),
                                               data=(xa.double().cpu(), ya.cpu()), loss="ce", **kw)[:, 0]
    out["arch_grad"] = arch
    runs = []
    plan = [("plain", "sgd", lr) for lr in config.sgd_lrs] + [("plain", "adam", lr) for lr in config.adam_lrs] + \
           [("residual", "sgd", lr) for lr in config.sgd_lrs] + [("residual+BN", "sgd", lr) for lr in config.sgd_lrs]
    n_classes = int(y.max()) + 1
    for name, opt, lr in tqdm(plan, desc="training", leave=False):
        model = deep_mlp(config.mlp_depth, config.mlp_width, x.shape[1], n_classes, init="he", seed=seed,
                         device=device, **variants[name])
        h = train_classifier(model, x, y, optimizer=opt, lr=lr, steps=config.train_steps,
                             batch_size=config.batch_size, seed=seed)
        runs.append({"arch": name, "opt": opt, "lr": lr, "step": np.array(h["step"]), "loss": np.array(h["loss"])})
    out["training"] = runs
    return out


def _final(run: dict) -> float:
    last = run["loss"][-1]
    return float(last) if np.isfinite(last) else float("inf")


def best_run(results: dict, arch: str, opt: str) -> dict:
    """The run of ``arch``/``opt`` with the lowest final training loss over the learning-rate grid."""
    return min((r for r in results["training"] if r["arch"] == arch and r["opt"] == opt), key=_final)


def grad_slope(results: dict, activation: str, width: int, depths=(8, 16, 32, 64)) -> float:
    """Least-squares slope of median log10‖∇_{W1}ℓ‖² vs depth."""
    med = [np.median(_log10(results["grad_first"][(activation, width, L)])) for L in depths]
    return float(np.polyfit(depths, med, 1)[0])


# --------------------------------------------------------------------------- claims
def claims(results: dict, config: Config) -> list[Claim]:
    out = []
    # 1. chain
    L = config.chain_claim_depth
    ch = results["chain"][L]
    theory = math.exp(CHAIN_LOG_MEAN * L)
    ratio = ch["median_abs"] / theory
    out.append(Claim("chain-median", f"neural chain L={L}: median |∏w| ≈ e^(−0.635L) and ∏w² rarely exceeds 1 "
                     "(although E ∏w² = 1)",
                     {"median": ch["median_abs"], "theory": theory, "ratio": ratio, "P(∏w²>1)": ch["p_sq_above_1"],
                      "sample mean ∏w²": ch["mean_sq"]},
                     "ratio within [1/3, 3] and P < 0.01", (1 / 3 <= ratio <= 3) and ch["p_sq_above_1"] < 0.01))
    # 2. slopes
    depths = tuple(d for d in (8, 16, 32, 64) if d in config.grad_depths)
    s_relu = grad_slope(results, "relu", 16, depths)
    s_lin = grad_slope(results, "linear", 4, depths)
    s_wide = grad_slope(results, "relu", 64, depths)
    t_relu = log_ratio_per_layer(16, "relu") / LN10
    t_lin = log_ratio_per_layer(4, "linear") / LN10
    ok2 = abs(s_relu / t_relu - 1) <= 0.4 and abs(s_lin / t_lin - 1) <= 0.4 and s_wide > -0.02
    out.append(Claim("gradient-slope", "median log10‖∇_{W1}ℓ‖² falls linearly in L with slope ≈ E ln(layer ratio)/ln 10; "
                     "wide ReLU (d=64) barely decays",
                     {"relu d=16": s_relu, "theory relu d=16": t_relu, "linear d=4": s_lin, "theory linear d=4": t_lin,
                      "relu d=64": s_wide},
                     "d=16 ReLU and d=4 linear within ±40 % of theory; d=64 slope > −0.02", ok2))
    # 3. collapse vs L/d
    at1 = [np.median(_log10(results["grad_first"][("relu", d, d)])) for d in config.relu_widths
           if ("relu", d, d) in results["grad_first"]]
    at2 = [np.median(_log10(results["grad_first"][("relu", d, 2 * d)])) for d in config.relu_widths
           if ("relu", d, 2 * d) in results["grad_first"]]
    span = float(np.max(at1) - np.min(at1))
    drop = float(np.median(at1) - np.median(at2))
    out.append(Claim("relu-collapse", "ReLU/He: the median first-layer gradient depends on L/d only",
                     {"span at L/d=1 (decades)": span, "drop from L/d=1 to 2 (decades)": drop,
                      "medians L/d=1": at1, "medians L/d=2": at2},
                     "span < 0.5 decades; L/d=2 ≥ 1 decade lower (median over widths)", span < 0.5 and drop >= 1))
    # 4. Hessian
    ht = results["hessian_top"]
    lo, hi = min(ht), max(ht)
    h_ratio = float(np.median(ht[hi]) / np.median(ht[lo]))
    out.append(Claim("hessian-vanishes", f"linear/Xavier width {config.hessian_width}: the top |λ| of the Hessian at "
                     "init vanishes with depth",
                     {f"median max|λ| L={lo}": float(np.median(ht[lo])), f"median max|λ| L={hi}": float(np.median(ht[hi])),
                      "ratio": h_ratio}, f"ratio (L={hi} / L={lo}) ≤ 1e-2", h_ratio <= 1e-2))
    # 5. balanced chain escape
    esc = results["balanced"]
    gd = {w0: esc["gd"][(w0, config.gd_lr)] for w0 in config.balanced_w0}
    th = {w0: balanced_escape_theory(config.balanced_depth, w0, config.gd_lr) for w0 in config.balanced_w0}
    rel = {w0: gd[w0] / th[w0] - 1 for w0 in config.balanced_w0}
    adam = {w0: esc["adam"][(w0, config.adam_lr)] for w0 in config.balanced_w0}
    adam_spread = max(adam.values()) / min(adam.values())
    out.append(Claim("balanced-escape", f"balanced chain L={config.balanced_depth}: GD escape time = "
                     "w0^−(L−2)/((L−2)η); Adam's barely depends on w0",
                     {"GD steps": gd, "theory": th, "relative error": rel, "Adam steps": adam, "Adam max/min": adam_spread},
                     "GD within 15 % of theory for every w0; Adam max/min < 2",
                     all(abs(r) <= 0.15 for r in rel.values()) and adam_spread < 2))
    # 6. loss rescaling
    scales = [c for c in config.rescale_scales if c >= 1e-4]
    rs = results["rescale"]
    adam_med = {c: float(np.median(rs[("adam", c)])) for c in scales}
    gd_succ = {c: float(np.isfinite(rs[("gd", c)]).mean()) for c in scales}
    a_vals = list(adam_med.values())
    adam_same = all(np.isfinite(a_vals)) and max(a_vals) / min(a_vals) - 1 <= 0.05
    gd_collapse = gd_succ[min(scales)] <= 0.2 * gd_succ[1.0] and all(
        gd_succ[a] >= gd_succ[b] for a, b in zip(sorted(scales, reverse=True), sorted(scales, reverse=True)[1:]))
    out.append(Claim("rescaling", f"random chains L={config.rescale_depth}: Adam (ε={config.adam_tiny_eps:g}) hits "
                     "loss < 0.25 at the same median time for loss scales c; GD's success collapses as c shrinks",
                     {"Adam median steps": adam_med, "GD success rate": gd_succ},
                     "Adam medians within 5 %; GD success non-increasing in 1/c and at c=1e-4 ≤ 0.2 × at c=1",
                     adam_same and gd_collapse))
    # 7. digits
    sgd, adm = best_run(results, "plain", "sgd"), best_run(results, "plain", "adam")
    res, rbn = best_run(results, "residual", "sgd"), best_run(results, "residual+BN", "sgd")
    g_plain = float(np.median(results["arch_grad"][("plain", config.mlp_depth)]))
    g_res = float(np.median(results["arch_grad"][("residual", config.mlp_depth)]))
    g_rbn = float(np.median(results["arch_grad"][("residual+BN", config.mlp_depth)]))
    ok7 = (_final(sgd) >= 1.8 and _final(sgd) - _final(adm) >= 0.5 and _final(res) < 1 and _final(rbn) < 1
           and g_res >= 1e3 * g_plain and g_rbn >= 1e3 * g_plain)
    out.append(Claim("deep-narrow-mlp", f"{config.dataset}, ReLU/He depth {config.mlp_depth} width {config.mlp_width}: "
                     "plain SGD stalls, Adam trains; residual (+BN) nets train with SGD and have far larger initial gradients",
                     {"best plain SGD CE": _final(sgd), "best Adam CE": _final(adm), "residual SGD CE": _final(res),
                      "residual+BN SGD CE": _final(rbn), "grad ratio residual/plain": g_res / g_plain,
                      "grad ratio residual+BN/plain": g_rbn / g_plain},
                     "plain SGD ≥ 1.8; Adam ≥ 0.5 lower; residual, residual+BN < 1; gradient ratios ≥ 1e3", ok7))
    return out


# --------------------------------------------------------------------------- figures
def _band(ax, x, samples_by_x, label, color, log=True, marker="o"):
    arr = np.array([_log10(s) if log else s for s in samples_by_x])
    q = _quartiles(arr, axis=1)
    ax.plot(x, q["median"], marker=marker, color=color, label=label)
    ax.fill_between(x, q["q1"], q["q3"], color=color, alpha=0.2)
    return q


def figure_chain(results: dict):
    """F1: distribution of log10|∏w| and mean vs median vs theory."""
    chain = results["chain"]
    depths = sorted(chain)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    for i, L in enumerate(depths):
        v = chain[L]["log_abs"] / LN10
        c = cmap(i / max(1, len(depths) - 1))
        axes[0].hist(v, bins=150, density=True, histtype="step", color=c, label=f"L = {L}")
        axes[0].axvline(np.median(v), color=c, lw=1)
        axes[0].axvline(CHAIN_LOG_MEAN * L / LN10, color=c, ls="--", lw=1)
    axes[0].set(xlabel="log10 |w_L⋯w_1|", ylabel="density",
                title="Neural chain, w ~ N(0,1): solid = median, dashed = −0.635L/ln10")
    axes[0].legend()
    Ls = np.array(depths)
    axes[1].semilogy(Ls, [chain[L]["median_abs"] ** 2 for L in depths], "o-", label="median of ∏w² (measured)")
    axes[1].semilogy(Ls, np.exp(2 * CHAIN_LOG_MEAN * Ls), "k--", label="e^(−1.27 L) (theory for the median)")
    axes[1].semilogy(Ls, [chain[L]["mean_sq"] for L in depths], "s-", label="sample mean of ∏w²")
    axes[1].axhline(1.0, color="gray", ls=":", label="E ∏w² = 1 (theory)")
    axes[1].set(xlabel="depth L", ylabel="∏w² (log scale)", title="The mean is preserved, the typical value vanishes")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_gradients(results: dict, config: Config):
    """F2: median first-layer gradient vs depth (linear/Xavier, ReLU/He), heat map, collapse vs L/d."""
    gf = results["grad_first"]
    depths = np.array(config.grad_depths)
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    cmap = plt.get_cmap("plasma")
    for ax, act, widths, name in ((axes[0, 0], "linear", config.linear_widths, "linear / Xavier"),
                                  (axes[0, 1], "relu", config.relu_widths, "ReLU / He")):
        for i, d in enumerate(widths):
            c = cmap(i / max(1, len(widths)))
            q = _band(ax, depths, [gf[(act, d, L)] for L in depths], f"d = {d}", c)
            slope = log_ratio_per_layer(d, act) / LN10
            ax.plot(depths, q["median"][0] + slope * (depths - depths[0]), ls="--", color=c, lw=1)
        ax.set(xlabel="depth L", ylabel="median log10 ‖∇_{W1} ℓ‖²",
               title=f"{name}: median and IQR over {config.grad_seeds} seeds\n(dashed: theory slope E ln r / ln 10 per layer)")
        ax.legend(fontsize=8)
    # heat map (ReLU)
    ws = list(config.relu_widths)
    grid = np.array([[np.median(_log10(gf[("relu", d, L)])) for L in depths] for d in ws])
    im = axes[1, 0].imshow(grid, aspect="auto", origin="lower", cmap="magma")
    axes[1, 0].set_xticks(range(len(depths)), [str(L) for L in depths])
    axes[1, 0].set_yticks(range(len(ws)), [str(d) for d in ws])
    for (i, j), val in np.ndenumerate(grid):
        axes[1, 0].text(j, i, f"{val:.1f}", ha="center", va="center", color="w" if val < np.median(grid) else "k", fontsize=8)
    fig.colorbar(im, ax=axes[1, 0], label="median log10 ‖∇_{W1} ℓ‖²")
    axes[1, 0].set(xlabel="depth L", ylabel="width d", title="ReLU / He: median over seeds")
    # collapse
    ax = axes[1, 1]
    for i, d in enumerate(ws):
        med = [np.median(_log10(gf[("relu", d, L)])) for L in depths]
        ax.plot(depths / d, med, "o-", color=cmap(i / len(ws)), label=f"d = {d}")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="L / d (log scale)", ylabel="median log10 ‖∇_{W1} ℓ‖²", title="ReLU / He: curves collapse on L/d")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_hessian(results: dict, config: Config):
    """F3: top |λ| of the Hessian vs depth (with theory slope) and full spectra of tiny nets."""
    ht = results["hessian_top"]
    depths = np.array(sorted(ht))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    q = _band(axes[0], depths, [ht[L] for L in depths], "median max|λ| (Lanczos), IQR band", "C0")
    slope = log_ratio_per_layer(config.hessian_width, "linear") / LN10
    # Gauss-Newton part J^T J: squared products of L-1 matrices; residual part (f-y)·∇²f: one product of L-2.
    axes[0].plot(depths, q["median"][0] + slope * (depths - depths[0]), "k--",
                 label=f"squared product (GN term): {slope:.3f} decades/layer")
    axes[0].plot(depths, q["median"][0] + slope / 2 * (depths - depths[0]), "k:",
                 label=f"single product (residual term): {slope / 2:.3f} decades/layer")
    axes[0].set(xlabel="depth L", ylabel="log10 max |λ(H)|",
                title=f"Linear / Xavier, width {config.hessian_width}, {config.hessian_seeds} seeds")
    axes[0].legend(fontsize=8)
    for L, eig in sorted(results["spectra"].items()):
        axes[1].plot(np.sort(np.abs(eig))[::-1], label=f"L = {L} ({len(eig)} params)")
    axes[1].set_yscale("log")
    axes[1].set(xlabel="eigenvalue index (sorted by |λ|)", ylabel="|λ| (log scale)",
                title=f"Full Hessian spectra at init, width {config.spectrum_width} (dense)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_escape(results: dict, config: Config):
    """F4: escape time vs learning rate (balanced chain), rescaling test, and the MLP loss curves."""
    esc = results["balanced"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    cmap = plt.get_cmap("viridis")
    for i, w0 in enumerate(config.balanced_w0):
        c = cmap(i / len(config.balanced_w0))
        lrs = sorted(lr for (w, lr) in esc["gd"] if w == w0)
        axes[0, 0].loglog(lrs, [esc["gd"][(w0, lr)] for lr in lrs], "o", color=c, label=f"GD, w0 = {w0}")
        axes[0, 0].loglog(lrs, [balanced_escape_theory(config.balanced_depth, w0, lr) for lr in lrs], "--", color=c)
        alrs = sorted(lr for (w, lr) in esc["adam"] if w == w0)
        axes[0, 0].loglog(alrs, [esc["adam"][(w0, lr)] for lr in alrs], "s-", color=c, mfc="none", label=f"Adam, w0 = {w0}")
    axes[0, 0].set(xlabel="learning rate", ylabel="steps until loss < 0.25",
                   title=f"Balanced chain L = {config.balanced_depth} (dashed: w0^−(L−2)/((L−2)η))")
    axes[0, 0].legend(fontsize=7, ncol=2)
    rs = results["rescale"]
    scales = list(config.rescale_scales)
    for key, label, m in (("gd", f"GD η={config.gd_lr}", "o"), ("adam", f"Adam ε={config.adam_tiny_eps:g}", "s"),
                          ("adam-eps1e-8", "Adam ε=1e-8 (default)", "^")):
        axes[0, 1].semilogx(scales, [np.isfinite(rs[(key, c)]).mean() for c in scales], m + "-", label=label)
        med = [np.median(rs[(key, c)]) for c in scales]
        axes[1, 0].loglog(scales, [v if np.isfinite(v) else np.nan for v in med], m + "-", label=label)
    axes[0, 1].set(xlabel="loss scale c (loss = c·½(∏w − 1)²)", ylabel="fraction of chains hitting loss < 0.25",
                   title=f"Rescaling test: {config.rescale_seeds} random chains, L = {config.rescale_depth}, "
                         f"{config.rescale_steps} steps")
    axes[0, 1].legend(fontsize=8)
    axes[1, 0].set(xlabel="loss scale c", ylabel="median hitting step (missing: median never hits)",
                   title="Median hitting time vs loss scale")
    axes[1, 0].legend(fontsize=8)
    ax = axes[1, 1]
    for arch, opt, ls in (("plain", "sgd", "-"), ("plain", "adam", "-"), ("residual", "sgd", "--"), ("residual+BN", "sgd", ":")):
        r = best_run(results, arch, opt)
        ax.semilogy(r["step"], r["loss"], ls, label=f"{arch}, {opt.upper()} (best lr {r['lr']:g})")
    ax.axhline(math.log(10), color="gray", lw=0.8, label="ln 10 (chance)")
    ax.set(xlabel="step", ylabel="training cross-entropy (nats, log scale)",
           title=f"{config.dataset}: ReLU/He MLP depth {config.mlp_depth}, width {config.mlp_width}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_architecture(results: dict, config: Config):
    """F5: first-layer gradient at init vs depth per architecture; SGD loss curves over the LR grid."""
    ag = results["arch_grad"]
    depths = np.array(config.arch_depths)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, name in enumerate(("plain", "residual", "residual+BN", "BN")):
        _band(axes[0], depths, [ag[(name, L)] for L in depths], name, f"C{i}")
    axes[0].set(xlabel="depth L", ylabel="median log10 ‖∇_{W1} ℓ‖² (CE)",
                title=f"{config.dataset}, width {config.mlp_width}, ReLU/He: gradient at init\n"
                      f"(median, IQR over {config.arch_seeds} seeds)")
    axes[0].legend(fontsize=8)
    for i, arch in enumerate(("plain", "residual", "residual+BN")):
        for j, r in enumerate(x for x in results["training"] if x["arch"] == arch and x["opt"] == "sgd"):
            axes[1].semilogy(r["step"], r["loss"], color=f"C{i}", alpha=0.4 + 0.6 * j / max(1, len(config.sgd_lrs) - 1),
                             label=f"{arch}, lr {r['lr']:g}")
    axes[1].set(xlabel="step", ylabel="training cross-entropy (log scale)",
                title=f"SGD (batch {config.batch_size}), depth {config.mlp_depth}")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def draw_init(depth: int = 32, width: int = 8, init: str = "he", activation: str = "relu", seeds: int = 8):
    """Widget view: median first-layer gradient and top Hessian |λ| at init vs depth (up to ``depth``)."""
    depths = sorted({d for d in (2, 4, 8, 16, 32, 64, 128) if d < depth} | {depth})
    grads = [layer_grad_norms(L, width, range(seeds), activation=activation, init=init)[:, 0] for L in depths]
    hdepths = depths[-4:]
    hess = [hessian_top_at_init(L, width, range(3), activation=activation, init=init, tol=1e-2) for L in hdepths]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    q = _band(axes[0], np.array(depths), grads, "median, IQR", "C0")
    critical = (activation, init) in (("relu", "he"), ("linear", "xavier"))  # where the theory applies
    slope = log_ratio_per_layer(width, activation) / LN10 if critical else None
    if slope is not None and np.isfinite(q["median"][0]):
        axes[0].plot(depths, q["median"][0] + slope * (np.array(depths) - depths[0]), "k--", label="theory slope")
    axes[0].set(xlabel="depth L", ylabel="log10 ‖∇_{W1} ℓ‖²", title=f"{activation} / {init}, width {width}: gradient at init")
    axes[0].legend(fontsize=8)
    _band(axes[1], np.array(hdepths), hess, "median of 3 seeds", "C1")
    axes[1].set(xlabel="depth L", ylabel="log10 max |λ(H)|", title="Top Hessian eigenvalue at init (Lanczos)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
