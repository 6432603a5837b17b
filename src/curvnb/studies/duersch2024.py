"""Curvature in the looking-glass (Duersch et al. 2024): glass curvature of ReLU networks and Alice.

Four computations, all on sklearn's digits with an MLP ``64 → H → H → 10`` (with biases), in a
ReLU version and a tanh twin of the same size and the same initial weights:

1. *Scaling* (float64, both nets pretrained briefly with full-batch Adam): the mean squared even
   part ``(ḡ − g₀)²`` and odd part ``((g₊ − g₋)/2)²`` of gradient differences against σ, plus the
   glass density and Hessian-diagonal estimates per layer.
2. *Loss along random directions* (float64): measured loss change vs the Hessian's quadratic
   model (exact Hessian-vector products) and vs the glass-corrected model, which adds the glass
   term ``sqrt(2/(3π)) sqrt(ρ_d) t^{3/2}`` (the expected |∫ gradient random walk| of variance rate
   ρ_d; minimising ``−a t + ½ h t² + sqrt(2/(3π)) sqrt(ρ) t^{3/2}`` gives exactly Alice's
   ``h_opt``, so this is the loss model Alice's step assumes).
3. *Training* (float32, mini-batches): Adam, SGD-momentum and Alice variants, counted in steps and
   in gradient evaluations.
4. *NAQ exactness* (float64): Alice on a diagonal quadratic of condition number 1e4.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from curvnb.claims import Claim
from curvnb.curvature import hvp, loss_and_grad
from curvnb.curvature.glass import GLASS_LOSS_COEFFICIENT, gradient_variation, loglog_slope, perturbed_gradients, rademacher
from curvnb.data import load_digits_split
from curvnb.optim.alice import Alice

TITLE = "Curvature in the looking-glass: glass curvature and the Alice optimizer"
COST = {"quick": "≈1–2 min on 2 CPU cores", "full": "≈10 min on one GPU (or ≈30 min on a CPU)"}


@dataclass(frozen=True)
class Config:
    hidden: int = 64
    pretrain_steps: int = 50           # full-batch Adam steps before the curvature measurements ("briefly")
    pretrain_lr: float = 1e-3
    long_pretrain_steps: int = 400     # a contrast: the ReLU net trained to (near) zero training loss
    sigmas: tuple[float, ...] = (1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2)
    scaling_samples: int = 4           # Rademacher draws per σ
    sigma_ref: float = 1e-3            # σ for per-layer densities and the ReLU/tanh ratio (= Alice's σ = lr)
    line_directions: int = 8
    line_steps: tuple[float, ...] = tuple(float(t) for t in np.logspace(-4, -1.5, 11))
    line_example_max: float = 0.02     # half-width of the example line plot (per-parameter step)
    train_steps: int = 400             # steps for the equal-steps comparison; budget = 3 × this in gradient evaluations
    train_seeds: int = 3               # training runs per optimizer (initial weights, batch order, Alice's z); curves are means
    batch_size: int = 64
    eval_every: int = 20
    lr_adam: float = 1e-3
    lr_sgd: float = 0.05
    lr_alice: float = 1e-3
    quick_every: int = 4               # "quick steps" variant: one curvature step every this many
    naq_dim: int = 50
    naq_condition: float = 1e4
    naq_steps: int = 200


PROFILES = {
    "quick": Config(),
    "full": Config(hidden=256, pretrain_steps=500, scaling_samples=16, line_directions=32,
                   train_steps=3000, train_seeds=5, eval_every=100, naq_dim=500, naq_steps=1000),
}

VARIANTS = ("SGD-momentum", "Adam", "Alice: no curvature", "Alice: Hessian", "Alice: glass", "Alice: both",
            "Alice: both, quick steps")
_ALICE_OPTIONS = {"Alice: no curvature": dict(curvature="none"), "Alice: Hessian": dict(curvature="hessian"),
                  "Alice: glass": dict(curvature="glass"), "Alice: both": dict(curvature="both"),
                  "Alice: both, quick steps": dict(curvature="both", curvature_every=None)}


# --------------------------------------------------------------------------- models
def mlp(hidden: int, activation: str, *, seed: int, dtype=torch.float32, device="cpu") -> nn.Sequential:
    """``64 → hidden → hidden → 10`` with biases; ``activation`` is ``"relu"``, ``"tanh"`` or ``"gelu"``.
    The same ``seed`` gives the same initial weights for every activation."""
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}: allowed values are {', '.join(map(repr, acts))}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, hidden), acts[activation](), nn.Linear(hidden, hidden),
                              acts[activation](), nn.Linear(hidden, 10))
    return model.to(dtype=dtype, device=device)


def layer_slices(model: nn.Sequential) -> list[tuple[str, slice]]:
    """(name, slice of the flat parameter vector) for each Linear layer (weight and bias together)."""
    out, start = [], 0
    for i, layer in enumerate(m for m in model if isinstance(m, nn.Linear)):
        n = sum(p.numel() for p in layer.parameters())
        out.append((f"layer {i + 1} ({layer.in_features}→{layer.out_features})", slice(start, start + n)))
        start += n
    return out


def pretrain(model: nn.Module, data, steps: int, lr: float) -> float:
    """Full-batch Adam (deterministic); returns the final training loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(data[0]), data[1])
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(loss_fn(model(data[0]), data[1]))


def _flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@torch.no_grad()
def _set_flat(model: nn.Module, flat: torch.Tensor) -> None:
    torch.nn.utils.vector_to_parameters(flat, model.parameters())


@torch.no_grad()
def _loss_at(model: nn.Module, flat: torch.Tensor, data) -> float:
    _set_flat(model, flat)
    return float(nn.functional.cross_entropy(model(data[0]), data[1]))


@torch.no_grad()
def _preactivation_signs(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    signs, h = [], x
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Linear) and layer is not model[-1]:
            signs.append(h > 0)
    return torch.cat([s.reshape(-1) for s in signs])


# --------------------------------------------------------------------------- computations
def run_scaling(config: Config, models: dict, data) -> dict:
    loss_fn = nn.CrossEntropyLoss()
    out = {}
    for name, model in models.items():
        out[name] = gradient_variation(model, loss_fn, data, config.sigmas, num_samples=config.scaling_samples,
                                       seed=1, groups=layer_slices(model))
        ref = gradient_variation(model, loss_fn, data, [config.sigma_ref], num_samples=config.scaling_samples,
                                 seed=2, groups=layer_slices(model))
        out[name + "/ref"] = {k: float(v[0]) for k, v in ref.items()}
    out["layers"] = [n for n, _ in layer_slices(models["relu"])]
    out["sigma_ref"] = config.sigma_ref
    return out


def run_line(config: Config, model: nn.Sequential, data, seed: int) -> dict:
    """Loss along ``ν ± t d`` (d Rademacher) vs the Hessian and glass-corrected models."""
    loss_fn = nn.CrossEntropyLoss()
    nu = _flat_params(model)
    loss0, g0 = loss_and_grad(model, loss_fn, data)
    signs0 = _preactivation_signs(model, data[0])
    gen = torch.Generator().manual_seed(seed + 11)
    ts = np.array(config.line_steps)
    K = config.line_directions
    measured, hess_pred, glass_pred, crossings = (np.zeros((K, 2, len(ts))) for _ in range(4))
    rho_dir, curv_dir, fd_dir = np.zeros(K), np.zeros(K), np.zeros(K)
    for k in range(K):
        d = rademacher(nu.numel(), generator=gen, dtype=nu.dtype, device=nu.device)
        dHd = float(d @ hvp(model, loss_fn, data, d))
        r = perturbed_gradients(model, loss_fn, data, config.sigma_ref, d)
        # directional glass density: variance rate of the directional derivative's jump part
        rho_dir[k] = 2 * float(d @ (0.5 * (r["g_plus"] + r["g_minus"]) - r["g0"])) ** 2 / config.sigma_ref
        curv_dir[k] = dHd
        fd_dir[k] = float(d @ (r["g_plus"] - r["g_minus"])) / (2 * config.sigma_ref)  # kernel-averaged curvature
        slope = float(g0 @ d)
        for j, sgn in enumerate((1.0, -1.0)):
            for i, t in enumerate(ts):
                measured[k, j, i] = _loss_at(model, nu + sgn * t * d, data) - loss0
                crossings[k, j, i] = float((_preactivation_signs(model, data[0]) != signs0).sum())
                hess_pred[k, j, i] = sgn * t * slope + 0.5 * t * t * dHd
        _set_flat(model, nu)
    rho_mean = float(rho_dir.mean())
    glass_term = GLASS_LOSS_COEFFICIENT * math.sqrt(rho_mean) * ts ** 1.5
    glass_pred = hess_pred + glass_term
    fd_pred = hess_pred + 0.5 * (fd_dir - curv_dir)[:, None, None] * ts ** 2
    # one direction over a symmetric range, for the picture
    d = rademacher(nu.numel(), generator=torch.Generator().manual_seed(seed + 12), dtype=nu.dtype)
    tt = np.linspace(-config.line_example_max, config.line_example_max, 161)
    ex_loss = np.array([_loss_at(model, nu + float(t) * d, data) for t in tt]) - loss0
    _set_flat(model, nu)
    dHd = float(d @ hvp(model, loss_fn, data, d))
    slope = float(g0 @ d)
    ex_hess = tt * slope + 0.5 * tt ** 2 * dHd
    ex_glass = ex_hess + GLASS_LOSS_COEFFICIENT * math.sqrt(rho_mean) * np.abs(tt) ** 1.5
    r = perturbed_gradients(model, loss_fn, data, config.sigma_ref, d)
    ex_fd = tt * slope + 0.5 * tt ** 2 * float(d @ (r["g_plus"] - r["g_minus"])) / (2 * config.sigma_ref)
    return {"t": ts, "measured": measured, "hessian": hess_pred, "glass": glass_pred, "crossings": crossings,
            "rho_dir": rho_dir, "dHd": curv_dir, "rho_dir_mean": rho_mean, "loss0": loss0,
            "err_hessian": np.abs(measured - hess_pred).mean(axis=(0, 1)),
            "err_glass": np.abs(measured - glass_pred).mean(axis=(0, 1)),
            "err_fd": np.abs(measured - fd_pred).mean(axis=(0, 1)), "fd_curvature": fd_dir,
            "mean_deviation": (measured - hess_pred).mean(axis=(0, 1)),
            "example": {"t": tt, "loss": ex_loss, "hessian": ex_hess, "glass": ex_glass, "fd": ex_fd}}


def make_optimizer(name: str, params, config: Config, seed: int) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (one of :data:`VARIANTS`) with the configuration's learning rates."""
    if name == "SGD-momentum":
        return torch.optim.SGD(params, lr=config.lr_sgd, momentum=0.9)
    if name == "Adam":
        return torch.optim.Adam(params, lr=config.lr_adam)
    if name not in _ALICE_OPTIONS:
        raise ValueError(f"unknown optimizer {name!r}: allowed values are {', '.join(map(repr, VARIANTS))}")
    opts = dict(_ALICE_OPTIONS[name])
    if "curvature_every" in opts:
        opts["curvature_every"] = config.quick_every
    return Alice(params, lr=config.lr_alice, seed=seed, **opts)


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    out = model(x)
    return float(nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).double().mean())


def train_one(name: str, config: Config, data: tuple, *, device: torch.device, seed: int,
              progress: bool = True) -> dict:
    """Train a fresh ReLU MLP with ``name`` until 3 × ``train_steps`` gradient evaluations are spent."""
    x_tr, y_tr, x_te, y_te = data
    model = mlp(config.hidden, "relu", seed=seed, device=device)
    opt = make_optimizer(name, model.parameters(), config, seed)
    loss_fn = nn.CrossEntropyLoss()
    budget = 3 * config.train_steps
    gen = torch.Generator().manual_seed(seed + 5)
    perm, pos = torch.randperm(len(x_tr), generator=gen), 0
    hist = {k: [] for k in ("step", "evals", "train_loss", "train_acc", "test_loss", "test_acc")}
    upper = []  # Alice: fraction of elements held at the step's upper bound
    evals, step = 0, 0

    def record():
        tl, ta = _evaluate(model, x_tr, y_tr)
        vl, va = _evaluate(model, x_te, y_te)
        for k, v in zip(hist, (step, evals, tl, ta, vl, va)):
            hist[k].append(v)

    record()
    bar = tqdm(total=budget, desc=name, leave=False, disable=not progress)
    while evals < budget:
        if pos + config.batch_size > len(x_tr):
            perm, pos = torch.randperm(len(x_tr), generator=gen), 0
        idx = perm[pos:pos + config.batch_size].to(device)
        pos += config.batch_size
        xb, yb = x_tr[idx], y_tr[idx]

        def closure():
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            return loss

        before = opt.grad_evals if isinstance(opt, Alice) else evals
        opt.step(closure)
        spent = (opt.grad_evals - before) if isinstance(opt, Alice) else 1
        evals += spent
        step += 1
        if isinstance(opt, Alice):
            upper.append(opt.last_info["upper_bound_fraction"])
        bar.update(spent)
        if step % config.eval_every == 0 or evals >= budget:
            record()
    bar.close()
    out = {k: np.array(v) for k, v in hist.items()}
    out["upper_bound_fraction"] = float(np.nanmean(upper)) if upper and not np.all(np.isnan(upper)) else float("nan")
    return out


def run_naq(config: Config, *, seed: int) -> dict:
    """max |G − ∇L(μ)| per step for Alice on a diagonal quadratic, with φ = 1 − β₁ and with φ = 0.5."""
    g = torch.Generator().manual_seed(seed + 21)
    diag = torch.logspace(0, math.log10(config.naq_condition), config.naq_dim, dtype=torch.float64)
    b = torch.randn(config.naq_dim, generator=g, dtype=torch.float64)
    x0 = torch.randn(config.naq_dim, generator=g, dtype=torch.float64)
    out = {"condition": float(diag.max() / diag.min())}
    for label, phi in (("phi=1-beta1", None), ("phi=0.5", 0.5)):
        x = nn.Parameter(x0.clone())
        opt = Alice([x], lr=1e-2, phi=phi, seed=seed)

        def closure():
            opt.zero_grad()
            loss = 0.5 * (diag * x * x).sum() - b @ x
            loss.backward()
            return loss

        errs, losses = [], []
        for _ in range(config.naq_steps):
            grad_at_mu = diag * x.detach() - b  # the model sits at μ between steps
            with torch.no_grad():
                losses.append(float(0.5 * (diag * x * x).sum() - b @ x))
            opt.step(closure)
            errs.append(float((opt.state[x]["G"] - grad_at_mu).abs().max()))
        out[label] = {"error": np.array(errs), "loss": np.array(losses), "warmup": opt.warmup}
    out["optimal_loss"] = float(-0.5 * (b * b / diag).sum())
    return out


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """All computations of the chapter (see the module docstring)."""
    x_tr, y_tr, x_te, y_te = load_digits_split(seed=seed, dtype=torch.float64, device=device)
    data64 = (x_tr, y_tr)
    models = {act: mlp(config.hidden, act, seed=seed, dtype=torch.float64, device=device) for act in ("relu", "tanh")}
    pre_loss = {act: pretrain(m, data64, config.pretrain_steps, config.pretrain_lr) for act, m in models.items()}
    scaling = run_scaling(config, models, data64)
    # contrast: the same ReLU net trained much longer, near interpolation (not part of any claim)
    long = mlp(config.hidden, "relu", seed=seed, dtype=torch.float64, device=device)
    pre_loss["relu (long)"] = pretrain(long, data64, config.long_pretrain_steps, 3e-3)
    scaling["relu (long)"] = gradient_variation(long, nn.CrossEntropyLoss(), data64, config.sigmas,
                                                num_samples=config.scaling_samples, seed=1)
    line = {act: run_line(config, m, data64, seed) for act, m in models.items()}
    data32 = tuple(t.float() if t.is_floating_point() else t for t in (x_tr, y_tr, x_te, y_te))
    training, per_seed = {}, {}
    for name in VARIANTS:
        runs = [train_one(name, config, data32, device=device, seed=seed + k) for k in range(config.train_seeds)]
        # the evaluation schedule is the same for every seed, so histories average pointwise
        training[name] = {k: np.mean([r[k] for r in runs], axis=0) for k in runs[0] if k != "upper_bound_fraction"}
        fractions = [r["upper_bound_fraction"] for r in runs if not math.isnan(r["upper_bound_fraction"])]
        training[name]["upper_bound_fraction"] = float(np.mean(fractions)) if fractions else float("nan")
        per_seed[name] = runs
    return {"pretrain_loss": pre_loss, "scaling": scaling, "line": line, "training": training,
            "training_per_seed": per_seed,
            "naq": run_naq(config, seed=seed), "sigmas": np.array(config.sigmas)}


# --------------------------------------------------------------------------- summaries
def slopes(results: dict) -> dict:
    s, sig = results["scaling"], results["sigmas"]
    return {f"{act}/{k}": loglog_slope(sig, s[act][k]) for act in ("relu", "tanh") for k in ("even", "odd")}


def line_comparison(results: dict, min_crossings: float = 10.0) -> dict:
    """Errors of both models at steps where on average ≥ ``min_crossings`` ReLU boundaries are crossed."""
    ln = results["line"]["relu"]
    cross = ln["crossings"].mean(axis=(0, 1))
    mask = cross >= min_crossings
    ratio = ln["err_glass"][mask] / ln["err_hessian"][mask]
    return {"t_range": [float(ln["t"][mask].min()), float(ln["t"][mask].max())] if mask.any() else [],
            "ratio_geomean": float(np.exp(np.mean(np.log(ratio)))) if mask.any() else float("nan"),
            "ratios": ratio, "crossings": cross[mask]}


def _at(hist: dict, key: str, where: str, value: float) -> float:
    """``hist[key]`` at the first record whose ``where`` ("step" or "evals") reaches ``value``."""
    idx = int(np.searchsorted(hist[where], value))
    return float(hist[key][min(idx, len(hist[key]) - 1)])


def ablation_rows(results: dict, config: Config) -> list[dict]:
    rows = []
    budget = 3 * config.train_steps
    for name, h in results["training"].items():
        rows.append({"optimizer": name, "grad evals / step": round(float(h["evals"][-1] / max(h["step"][-1], 1)), 2),
                     f"test acc @ {config.train_steps} steps": _at(h, "test_acc", "step", config.train_steps),
                     f"test acc @ {budget} evals": _at(h, "test_acc", "evals", budget),
                     "± (std over seeds)": float(np.std([_at(r, "test_acc", "evals", budget)
                                                         for r in results["training_per_seed"][name]])),
                     f"train loss @ {budget} evals": _at(h, "train_loss", "evals", budget),
                     f"test loss @ {budget} evals": _at(h, "test_loss", "evals", budget),
                     "steps at upper bound": h["upper_bound_fraction"]})
    return rows


def ablation_table(results: dict, config: Config) -> str:
    """The ablation as a Markdown table (accuracies in %)."""
    rows = ablation_rows(results, config)
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{100 * v:.1f}" if ("acc" in k or k.startswith("±")) else ("–" if isinstance(v, float) and math.isnan(v) else
                 (f"{100 * v:.1f} %" if k == "steps at upper bound" else (f"{v:.3g}" if isinstance(v, float) else str(v))))
                 for k, v in r.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims(results: dict, config: Config) -> list[Claim]:
    sl = slopes(results)
    lc = line_comparison(results)
    naq = results["naq"]
    w = naq["phi=1-beta1"]["warmup"]
    exact_err = float(naq["phi=1-beta1"]["error"][w:].max())
    other_err = float(naq["phi=0.5"]["error"][w:].max())
    ratio = results["scaling"]["relu/ref"]["rho"] / results["scaling"]["tanh/ref"]["rho"]
    rows = {r["optimizer"]: r for r in ablation_rows(results, config)}
    k_steps, k_evals = f"test acc @ {config.train_steps} steps", f"test acc @ {3 * config.train_steps} evals"
    d_steps = 100 * (rows["Alice: both"][k_steps] - rows["Adam"][k_steps])
    d_evals = 100 * (rows["Alice: both"][k_evals] - rows["Adam"][k_evals])

    def per_seed_diff(where: str, value: float) -> list[float]:
        runs = results["training_per_seed"]
        return [100 * (_at(a, "test_acc", where, value) - _at(b, "test_acc", where, value))
                for a, b in zip(runs["Alice: both"], runs["Adam"])]
    return [
        Claim("glass-scaling", "log–log slope of mean (ḡ − g₀)² vs σ ∈ [1e-5, 1e-2]: ≈ 1 for ReLU (glass), ≥ 3 for tanh",
              {"relu": sl["relu/even"], "tanh": sl["tanh/even"]}, "relu ∈ [0.6, 1.5] and tanh ≥ 3",
              0.6 <= sl["relu/even"] <= 1.5 and sl["tanh/even"] >= 3),
        Claim("hessian-scaling", "log–log slope of mean ((g₊ − g₋)/2)² vs σ is ≈ 2 for both ReLU and tanh",
              {"relu": sl["relu/odd"], "tanh": sl["tanh/odd"]}, "both ∈ [1.7, 2.3]",
              1.7 <= sl["relu/odd"] <= 2.3 and 1.7 <= sl["tanh/odd"] <= 2.3),
        Claim("glass-loss-model", "the glass-corrected model of the loss change along random directions has a "
              "smaller error than the Hessian-only model (ReLU, steps where ≥ 10 boundaries are crossed)",
              {"error ratio glass/Hessian (geometric mean)": lc["ratio_geomean"], "step range": lc["t_range"]},
              "ratio < 1", lc["ratio_geomean"] < 1),
        Claim("naq-exactness", f"Alice's running gradient G equals ∇L(μ) exactly on a diagonal quadratic "
              f"(condition {naq['condition']:.0e}) with φ = 1 − β₁, ω = 1, and not with φ = 0.5",
              {"max error, φ = 1−β₁": exact_err, "max error, φ = 0.5": other_err},
              "< 1e-10 with φ = 1 − β₁; > 1e-6 with φ = 0.5", exact_err < 1e-10 and other_err > 1e-6),
        Claim("smooth-glass-ratio", f"the glass density of the ReLU net is ≥ 100× that of its tanh twin at σ = {config.sigma_ref:g}",
              float(ratio), "ratio ≥ 100", ratio >= 100),
        Claim("alice-vs-adam-steps", f"Alice (both terms) reaches Adam's test accuracy within 1 point at equal steps "
              f"({config.train_steps}; mean over {config.train_seeds} seeds)",
              {"Alice − Adam (points)": d_steps, "Alice": 100 * rows["Alice: both"][k_steps],
               "Adam": 100 * rows["Adam"][k_steps], "per seed": per_seed_diff("step", config.train_steps)},
              "|Δ| ≤ 1 point", abs(d_steps) <= 1.0),
        Claim("alice-vs-adam-evals", f"Alice (both terms) is at least as accurate as Adam at equal gradient evaluations "
              f"({3 * config.train_steps}; mean over {config.train_seeds} seeds); our first look found it no better",
              {"Alice − Adam (points)": d_evals, "Alice": 100 * rows["Alice: both"][k_evals],
               "Adam": 100 * rows["Adam"][k_evals], "per seed": per_seed_diff("evals", 3 * config.train_steps)},
              "Δ ≥ 0", d_evals >= 0),
    ]


# --------------------------------------------------------------------------- figures
_COLORS = {"relu": "C3", "tanh": "C0"}


def figure_scaling(results: dict):
    """Mean squared even and odd gradient differences vs σ, ReLU vs tanh, log–log."""
    s, sig, sl = results["scaling"], results["sigmas"], slopes(results)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for act in ("relu", "tanh"):
        axes[0].loglog(sig, s[act]["even"], "o-", color=_COLORS[act], label=f"{act} (slope {sl[act + '/even']:.2f})")
        axes[1].loglog(sig, s[act]["odd"], "o-", color=_COLORS[act], label=f"{act} (slope {sl[act + '/odd']:.2f})")
    if "relu (long)" in s:
        lg = s["relu (long)"]
        for ax, k in ((axes[0], "even"), (axes[1], "odd")):
            ax.loglog(sig, lg[k], "^--", color="C1", ms=4,
                      label=f"relu, trained to ≈0 loss (slope {loglog_slope(sig, lg[k]):.2f})")
    for ax, p, y0 in ((axes[0], 1, s["relu"]["even"][0]), (axes[0], 4, s["tanh"]["even"][0]), (axes[1], 2, s["tanh"]["odd"][0])):
        ax.loglog(sig, y0 * (sig / sig[0]) ** p, "k:", lw=0.8)
        ax.annotate(f"∝ σ^{p}", (sig[-2], y0 * (sig[-2] / sig[0]) ** p), fontsize=8)
    axes[0].set(xlabel="perturbation scale σ (per parameter)", ylabel="mean (ḡ − g₀)²",
                title="even part: glass (ReLU) vs smooth (tanh)")
    axes[1].set(xlabel="perturbation scale σ (per parameter)", ylabel="mean ((g₊ − g₋)/2)²",
                title="odd part: the Hessian term")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_layers(results: dict):
    """Per-layer glass density ρ and Hessian-diagonal estimate h at σ_ref; the glass curvature α = (3/4π) ρ/|g|."""
    s, layers = results["scaling"], results["scaling"]["layers"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = np.arange(len(layers))
    for j, act in enumerate(("relu", "tanh")):
        ref = s[act + "/ref"]
        rho = [ref[f"rho/{n}"] for n in layers]
        axes[0].bar(xs + (j - 0.5) * 0.38, rho, 0.38, color=_COLORS[act], label=act)
    for j, (key, lab) in enumerate((("hess", "Hessian h"), ("alpha", "glass α = (3/4π) ρ/|g|"))):
        vals = []
        for n in layers:
            ref = s["relu/ref"]
            vals.append(ref[f"hess/{n}"] if key == "hess" else 3 / (4 * np.pi) * ref[f"rho/{n}"] / ref[f"absgrad/{n}"])
        axes[1].bar(xs + (j - 0.5) * 0.38, vals, 0.38, color=("C2", "C3")[j], label=lab)
    axes[0].set(yscale="log", ylabel="mean glass density ρ (grad² / unit step)", title="glass density per layer")
    axes[1].set(yscale="log", ylabel="mean curvature (grad / unit step)", title="ReLU net: Hessian vs glass curvature")
    for ax in axes:
        ax.set_xticks(xs, layers, fontsize=8)
        ax.set_xlabel(f"layer (σ = {s['sigma_ref']:g})")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 30)  # room for the legend above the bars
        ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def figure_line(results: dict):
    """Loss along a random direction (ReLU), and the mean error of each model vs step size."""
    ln = results["line"]["relu"]
    ex = ln["example"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    ax.plot(ex["t"], ex["loss"], "k-", label="measured")
    ax.plot(ex["t"], ex["hessian"], "C0--", label="Hessian quadratic")
    ax.plot(ex["t"], ex["glass"], "C3-.", label="quadratic + glass term")
    ax.plot(ex["t"], ex["fd"], "C2:", lw=2, label="finite-difference curvature (σ = σ_ref)")
    ax.set(xlabel="step t along a Rademacher direction (per parameter)", ylabel="L(ν + t d) − L(ν)",
           title="ReLU MLP: loss along one line")
    ax.locator_params(axis="x", nbins=5)
    ax.legend()
    ax = axes[1]
    for act, style in (("relu", "-"), ("tanh", ":")):
        l2 = results["line"][act]
        ax.loglog(l2["t"], l2["err_hessian"], "C0" + style, marker="o", ms=3, label=f"{act}: Hessian model")
        ax.loglog(l2["t"], l2["err_glass"], "C3" + style, marker="s", ms=3, label=f"{act}: glass-corrected")
        ax.loglog(l2["t"], l2["err_fd"], "C2" + style, marker="^", ms=3, label=f"{act}: finite-difference curvature")
    lc = line_comparison(results)
    if lc["t_range"]:
        ax.axvspan(*lc["t_range"], color="0.9", zorder=0, label="≥ 10 ReLU boundaries crossed")
    ax.set(xlabel="step t (per parameter)", ylabel="mean |measured − model| loss change",
           title="model error over 2×%d directions" % ln["measured"].shape[0])
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


_METRICS = {"test accuracy": "test_acc", "train loss": "train_loss", "test loss": "test_loss",
            "train accuracy": "train_acc"}


def figure_training(results: dict):
    """Test accuracy and train loss vs gradient evaluations, and test accuracy vs steps."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    for i, (name, h) in enumerate(results["training"].items()):
        style = "-" if name.startswith("Alice") else "--"
        axes[0].plot(h["evals"], 100 * h["test_acc"], style, color=f"C{i}", label=name)
        axes[1].semilogy(h["evals"], h["train_loss"], style, color=f"C{i}", label=name)
        axes[2].plot(h["step"], 100 * h["test_acc"], style, color=f"C{i}", label=name)
    axes[0].set(xlabel="gradient evaluations", ylabel="test accuracy (%)", title="accuracy per gradient evaluation",
                ylim=(80, 100))
    axes[1].set(xlabel="gradient evaluations", ylabel="training loss (log)", title="training loss")
    axes[2].set(xlabel="optimizer steps", ylabel="test accuracy (%)", title="accuracy per step", ylim=(80, 100))
    axes[2].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def figure_naq(results: dict):
    """max |G − ∇L(μ)| per step on the badly conditioned quadratic, for two choices of φ."""
    naq = results["naq"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, c in (("phi=1-beta1", "C2"), ("phi=0.5", "C1")):
        axes[0].semilogy(np.maximum(naq[label]["error"], 1e-18), color=c, label=label.replace("phi", "φ").replace("beta1", "β₁"))
        axes[1].semilogy(naq[label]["loss"] - naq["optimal_loss"] + 1e-16, color=c, label=label.replace("phi", "φ").replace("beta1", "β₁"))
    w = naq["phi=1-beta1"]["warmup"]
    for ax in axes:
        ax.axvline(w, color="0.6", ls=":", label="end of warm-up")
        ax.legend()
    axes[0].set(xlabel="step", ylabel="max |G − ∇L(μ)| (floored at 1e-18)",
                title=f"NAQ exactness, condition {naq['condition']:.0e}")
    axes[1].set(xlabel="step", ylabel="L(μ) − L* (log)", title="loss on the quadratic")
    fig.tight_layout()
    return fig


def draw_ablation(results: dict, optimizer: str = "Alice: both", compare: str = "Adam",
                  metric: str = "test accuracy", x_axis: str = "gradient evaluations"):
    """Widget view over the ablation runs: one metric of two optimizers vs evaluations or steps."""
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}: allowed values are {', '.join(map(repr, _METRICS))}")
    if x_axis not in ("gradient evaluations", "steps"):
        raise ValueError(f"unknown x_axis {x_axis!r}: allowed values are 'gradient evaluations', 'steps'")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, color in ((optimizer, "C3"), (compare, "C0")):
        if name not in results["training"]:
            raise ValueError(f"unknown optimizer {name!r}: allowed values are {', '.join(map(repr, results['training']))}")
        h = results["training"][name]
        x = h["evals"] if x_axis == "gradient evaluations" else h["step"]
        y = h[_METRICS[metric]] * (100 if "accuracy" in metric else 1)
        ax.plot(x, y, color=color, label=name)
    if "loss" in metric:
        ax.set_yscale("log")
    ax.set(xlabel=x_axis, ylabel=metric + (" (%)" if "accuracy" in metric else ""),
           title=f"{optimizer} vs {compare}")
    ax.legend()
    return fig


def findings_markdown(results: dict, config: Config) -> str:
    """A short, computed account of what this run found (so the prose matches any profile/seed)."""
    sl, lc = slopes(results), line_comparison(results)
    rows = {r["optimizer"]: r for r in ablation_rows(results, config)}
    budget = 3 * config.train_steps
    ka, kl = f"test acc @ {budget} evals", f"test loss @ {budget} evals"
    ln = results["line"]["relu"]
    mask = ln["crossings"].mean(axis=(0, 1)) >= 10
    fd_gain = float(np.exp(np.mean(np.log(ln["err_hessian"][mask] / ln["err_fd"][mask])))) if mask.any() else float("nan")
    odd_ok = 1.7 <= sl["relu/odd"] <= 2.3
    sign = float(np.mean(ln["mean_deviation"][mask] / ln["err_hessian"][mask])) if mask.any() else float("nan")
    upper = rows["Alice: both"]["steps at upper bound"]
    lines = [
        f"- **Glass scaling.** The even part (ḡ − g₀)² grows like σ^{sl['relu/even']:.2f} for ReLU and "
        f"σ^{sl['tanh/even']:.2f} for tanh: the ReLU signature is there.",
        f"- **Hessian term.** The odd part grows like σ^{sl['tanh/odd']:.2f} for tanh and σ^{sl['relu/odd']:.2f} for ReLU. "
        + ("Both are ≈ 2, as the paper says." if odd_ok else
           "For ReLU this is **not** ≈ 2: at small σ the boundary jumps also dominate g₊ − g₋ (their variance "
           "grows like σ, the Hessian part like σ²), so the log–log line bends from slope 1 to slope 2 inside "
           "[1e-5, 1e-2]. The paper's claim does not reproduce on our net."),
        f"- **Loss along lines.** Along random directions the measured loss of the ReLU net deviates from the "
        f"Hessian quadratic (mean signed deviation / mean |deviation| = {sign:.2f}"
        + ("; it lies systematically *above* it: crossing boundaries adds curvature that the point Hessian does "
           "not see)." if sign > 0.5 else ").")
        + f" The glass term √(2/(3π))·√ρ·t^1.5 shrinks the error "
        f"only by a factor {1 / lc['ratio_geomean']:.2f} (geometric mean over t ∈ "
        f"[{lc['t_range'][0]:.0e}, {lc['t_range'][1]:.0e}]); the finite-difference curvature dᵀ(g₊ − g₋)/(2σ) "
        f"at σ = {config.sigma_ref:g}, which includes the jumps, shrinks it by {fd_gain:.1f}×.",
        f"- **Training** (means over {config.train_seeds} seeds). At {budget} gradient evaluations Alice (both terms) reaches "
        f"{100 * rows['Alice: both'][ka]:.1f} % test accuracy vs Adam's {100 * rows['Adam'][ka]:.1f} % "
        f"(test loss {rows['Alice: both'][kl]:.3f} vs {rows['Adam'][kl]:.3f}); on the 297-image test set one "
        f"image is 0.34 points. Alice's step sat at its Adam-like upper "
        f"bound for {100 * upper:.0f} % of the elements and steps (Hessian only: "
        f"{100 * rows['Alice: Hessian']['steps at upper bound']:.0f} %)"
        + (", so at this learning rate the curvature terms rarely change the step, and the ablation rows differ "
           "by at most a few test images." if upper > 0.8 else "."),
    ]
    return "\n".join(lines)
