"""The break-even point on optimization trajectories (Jastrzębski et al., ICLR 2020).

SGD with a larger learning rate η or a smaller batch size S reaches the point where training
becomes unstable along the top Hessian direction ("break-even", λ_H¹ ≈ 2/η for full-batch GD)
earlier, at lower curvature, and from then on stays in flatter regions: the maxima of λ_H¹ and of
λ_K¹ (top eigenvalue of the per-example gradient covariance K) are smaller (Conjecture 1), and K
is better conditioned (Conjecture 2).

The quick profile trains a small 1D-CNN on MNIST-1D (generated offline) with plain SGD for
η ∈ {0.05, 0.1, 0.2} at S = 32 and S ∈ {16, 128} at η = 0.1, probing λ_H¹ (Lanczos on 500 fixed
training examples) and the full spectrum of K (exact, from per-example gradients of 256 fixed
examples, in float64) twice per epoch and more often early. It also runs full-batch GD on a
small subset to show the edge of stability (Cohen et al. 2021). The full profile is the paper's
SimpleCNN on CIFAR-10 from a local folder, with the batch-norm sweep.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from curvnb.cache import cache_key
from curvnb.claims import Claim
from curvnb.curvature import (flatten, gradient_covariance_eigenvalues, hessian_eigenvalues, loss_and_grad,
                              trainable_parameters, unflatten_like)
from curvnb.train import evaluate, train

TITLE = "The break-even point on optimization trajectories"
COST = {"quick": "≈2 min on 2 CPU cores (5 SGD runs + 1 GD run, cached)",
        "full": "many GPU hours (SimpleCNN on CIFAR-10, 200 epochs per run, BN sweep; resumable)"}

DATASETS = ("mnist1d", "cifar10")
MODELS = ("cnn1d", "simplecnn")


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"                 # "mnist1d" (generated offline) | "cifar10" (local folder)
    data_folder: str = ""                    # CIFAR-10 folder ("": $CURVNB_DATA/cifar10 or data/cifar10)
    num_samples: int = 5000                  # MNIST-1D: 4000 train / 1000 test
    model: str = "cnn1d"                     # "cnn1d" | "simplecnn"
    lrs: tuple[float, ...] = (0.05, 0.1, 0.2)  # learning-rate sweep at S = batch_size
    batch_size: int = 32
    batch_sizes: tuple[int, ...] = (16, 128)   # batch-size sweep at η = batch_lr
    batch_lr: float = 0.1
    bn_lrs: tuple[float, ...] = ()           # SimpleCNN-with-BN sweep (full profile)
    epochs: int = 15
    probes_per_epoch: int = 2
    early_probes: int = 3                    # extra probes inside the first probe interval
    hessian_examples: int = 500
    hessian_k: int = 1
    hessian_tol: float = 1e-2
    cov_examples: int = 256
    eos_examples: int = 256                  # full-batch GD (edge of stability) on this subset
    eos_lr: float = 0.1
    eos_steps: int = 600
    eos_probe_every: int = 10
    checkpoints: bool = False                # resumable per-run checkpoints under _build/checkpoints


PROFILES = {
    "quick": Config(),
    "full": Config(dataset="cifar10", model="simplecnn", lrs=(0.001, 0.01, 0.1), batch_size=128,
                   batch_sizes=(32, 512), batch_lr=0.01, bn_lrs=(0.001, 0.01, 0.1, 1.0), epochs=200,
                   probes_per_epoch=1, early_probes=4, hessian_examples=2250, hessian_k=5, hessian_tol=1e-3,
                   cov_examples=1000, eos_examples=1000, eos_lr=0.02, eos_steps=3000, eos_probe_every=25,
                   checkpoints=True),
}


# --------------------------------------------------------------------------- data and models
def load_data(config: Config, device: torch.device, seed: int = 42):
    """``(x_train, y_train, x_test, y_test)`` for ``config.dataset``."""
    if config.dataset == "mnist1d":
        from curvnb.data.mnist1d import load_mnist1d

        return load_mnist1d(config.num_samples, seed=seed, device=device)
    if config.dataset == "cifar10":
        from curvnb.data.local import load_cifar10  # raises a clear error naming the folder if missing

        xtr, ytr, xte, yte = load_cifar10(config.data_folder or None)
        mean, std = xtr.mean(dim=(0, 2, 3), keepdim=True), xtr.std(dim=(0, 2, 3), keepdim=True)
        return tuple(t.to(device) for t in ((xtr - mean) / std, ytr, (xte - mean) / std, yte))
    raise ValueError(f"unknown dataset {config.dataset!r}: allowed values are {', '.join(map(repr, DATASETS))}")


def make_model(config: Config, x_example: torch.Tensor, *, batch_norm: bool = False) -> nn.Module:
    """A freshly initialised model for ``config.model`` (initialise under a fixed torch seed)."""
    from curvnb.models.cnn import CNN1D, SimpleCNN

    if config.model == "cnn1d":
        if batch_norm:
            raise ValueError("the batch-norm sweep needs model='simplecnn'")
        return CNN1D(length=x_example.shape[-1])
    if config.model == "simplecnn":
        return SimpleCNN(in_channels=x_example.shape[1], image_size=x_example.shape[-1], batch_norm=batch_norm)
    raise ValueError(f"unknown model {config.model!r}: allowed values are {', '.join(map(repr, MODELS))}")


# --------------------------------------------------------------------------- probes
def top_hessian_probe(loss_fn, data, *, k: int, tol: float, seed: int):
    """Probe: the top-k Hessian eigenvalues of the loss on ``data`` (Lanczos, fixed start vector)."""
    def probe(model: nn.Module) -> list[float]:
        res = hessian_eigenvalues(model, loss_fn, data, k=k, tol=tol, seed=seed)
        return [float(v) for v in res.eigenvalues]
    return probe


def covariance_probe(loss_fn, data):
    """Probe: the whole nonzero spectrum of K from per-example gradients of ``data`` (float64).

    K = (1/N) Σ (g_i − ḡ)(g_i − ḡ)ᵀ has rank ≤ N − 1, so its smallest nonzero eigenvalue λ_K^* is
    the (N−1)-th; float64 keeps it above rounding noise. Tr K is the sum of the spectrum."""
    x, y = data
    x64 = x.double() if torch.is_floating_point(x) else x
    y64 = y.double() if torch.is_floating_point(y) else y

    def probe(model: nn.Module) -> dict[str, Any]:
        m64 = copy.deepcopy(model).double()
        vals = gradient_covariance_eigenvalues(m64, loss_fn, (x64, y64), k=len(x)).cpu().numpy()
        return {"lambda_1": float(vals[0]), "trace": float(vals.sum()), "lambda_star": float(vals[len(x) - 2]),
                "top": [float(v) for v in vals[:5]]}
    return probe


ALPHA_GRID = np.geomspace(0.03, 100.0, 25)  # step multiples tried for α*


def overshoot_probe(loss_fn, eval_data, batch, lr: float, grid: np.ndarray = ALPHA_GRID):
    """Probe: α* = the smallest α on ``grid`` with L(θ − α·Δ) ≥ 1.2·L(θ), Δ = η·∇L_batch(θ).

    L is the loss on ``eval_data``; ``batch`` is a fixed mini-batch standing in for the SGD step
    (the paper uses the actual next step). A small α* means the step overshoots along its own
    direction (high curvature along it); NaN if no α on the grid raises the loss by 20 %."""
    def probe(model: nn.Module) -> float:
        params = trainable_parameters(model)
        theta = flatten([p.detach() for p in params]).clone()
        _, g = loss_and_grad(model, loss_fn, batch)
        step = lr * g
        base = evaluate(model, loss_fn, eval_data)["loss"]
        alpha_star = float("nan")
        try:
            with torch.no_grad():
                for alpha in grid:
                    for p, v in zip(params, unflatten_like(theta - float(alpha) * step, params)):
                        p.copy_(v)
                    if evaluate(model, loss_fn, eval_data)["loss"] >= 1.2 * base:
                        alpha_star = float(alpha)
                        break
        finally:
            with torch.no_grad():
                for p, v in zip(params, unflatten_like(theta, params)):
                    p.copy_(v)
        return alpha_star
    return probe


def _label(lr: float, batch_size: int, bn: bool = False) -> str:
    return f"η={lr:g}, S={batch_size}" + (", BN" if bn else "")


def run_specs(config: Config) -> list[dict[str, Any]]:
    """Every SGD run of the study: the LR sweep, the batch-size sweep and the BN sweep (no duplicates)."""
    specs = [{"lr": lr, "batch_size": config.batch_size, "bn": False, "sweep": "lr"} for lr in config.lrs]
    for s in config.batch_sizes:
        specs.append({"lr": config.batch_lr, "batch_size": s, "bn": False, "sweep": "batch"})
    specs += [{"lr": lr, "batch_size": config.batch_size, "bn": True, "sweep": "bn"} for lr in config.bn_lrs]
    seen, unique = set(), []
    for s in specs:
        key = (s["lr"], s["batch_size"], s["bn"])
        if key not in seen:
            seen.add(key)
            unique.append({**s, "label": _label(*key)})
    return unique


def _checkpoint_path(config: Config, seed: int, device: torch.device, name: str) -> Path | None:
    if not config.checkpoints:
        return None
    from curvnb.paths import build_dir

    key = cache_key(config=config, seed=seed, device=device.type, run=name)
    return build_dir() / "checkpoints" / "jastrzebski2020" / f"{name.replace(' ', '').replace(',', '_')}-{key}.pt"


def _arrays(history: dict[str, Any], steps_per_epoch: float) -> dict[str, Any]:
    """Plain NumPy arrays from a ``train`` history with the two curvature probes."""
    out = {"step": np.array(history["step"]), "epoch": np.array(history["step"]) / steps_per_epoch,
           "loss": np.array(history["loss"]), "accuracy": np.array(history.get("accuracy", [])),
           "step_loss": np.array(history["step_loss"]), "diverged": bool(history["diverged"]),
           "seconds": float(history["seconds"])}
    if "hessian" in history:
        out["lambda_h"] = np.array([v[0] for v in history["hessian"]])
        out["lambda_h_top"] = np.array(history["hessian"])
    if "alpha_star" in history:
        out["alpha_star"] = np.array(history["alpha_star"], dtype=float)
    if "covariance" in history:
        cov = history["covariance"]
        out["lambda_k"] = np.array([c["lambda_1"] for c in cov])
        out["trace_k"] = np.array([c["trace"] for c in cov])
        out["lambda_k_star"] = np.array([c["lambda_star"] for c in cov])
    return out


def run_sgd(config: Config, *, device: torch.device, seed: int, spec: dict[str, Any], data=None,
            progress: bool = True) -> dict[str, Any]:
    """One SGD run with curvature probes; returns arrays and final train/test accuracy."""
    xtr, ytr, xte, yte = data if data is not None else load_data(config, device)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed + 17)
    perm = torch.randperm(len(xtr), generator=g).to(xtr.device)
    hess_data = (xtr[perm[:config.hessian_examples]], ytr[perm[:config.hessian_examples]])
    cov_idx = perm[config.hessian_examples:config.hessian_examples + config.cov_examples]
    cov_data = (xtr[cov_idx], ytr[cov_idx])
    torch.manual_seed(seed)  # the same initialisation for every run
    model = make_model(config, xtr, batch_norm=spec["bn"]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec["lr"])
    steps_per_epoch = len(xtr) // spec["batch_size"]
    probe_every = max(1, steps_per_epoch // config.probes_per_epoch)
    early = [int(round(probe_every * i / (config.early_probes + 1))) for i in range(1, config.early_probes + 1)]
    step_batch = (hess_data[0][:spec["batch_size"]], hess_data[1][:spec["batch_size"]])
    probes = {"hessian": top_hessian_probe(loss_fn, hess_data, k=config.hessian_k, tol=config.hessian_tol, seed=seed),
              "covariance": covariance_probe(loss_fn, cov_data),
              "alpha_star": overshoot_probe(loss_fn, hess_data, step_batch, spec["lr"])}
    history = train(model, opt, loss_fn, (xtr, ytr), steps=config.epochs * steps_per_epoch,
                    batch_size=spec["batch_size"], probe_every=probe_every, probe_at=[s for s in early if s > 0],
                    probes=probes, seed=seed, probe_data=hess_data, progress=progress, description=spec["label"],
                    checkpoint=_checkpoint_path(config, seed, device, spec["label"]))
    out = {**spec, **_arrays(history, steps_per_epoch)}
    out["final_train_accuracy"] = evaluate(model, loss_fn, (xtr, ytr))["accuracy"]
    out["test_accuracy"] = evaluate(model, loss_fn, (xte, yte))["accuracy"]
    return out


def run_eos(config: Config, *, device: torch.device, seed: int, data=None, progress: bool = True) -> dict[str, Any]:
    """Full-batch GD on ``eos_examples`` training examples, sharpness every ``eos_probe_every`` steps."""
    xtr, ytr = (data if data is not None else load_data(config, device))[:2]
    x, y = xtr[:config.eos_examples], ytr[:config.eos_examples]
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(seed)
    model = make_model(config, x).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.eos_lr)
    history = train(model, opt, loss_fn, (x, y), steps=config.eos_steps, batch_size=len(x),
                    probe_every=config.eos_probe_every, probe_data=(x, y), seed=seed, progress=progress,
                    probes={"hessian": top_hessian_probe(loss_fn, (x, y), k=1, tol=config.hessian_tol, seed=seed)},
                    description=f"GD η={config.eos_lr:g}", checkpoint=_checkpoint_path(config, seed, device, "eos"))
    return {"lr": config.eos_lr, "examples": len(x), **_arrays(history, 1.0)}


def run(config: Config, *, device: torch.device, seed: int) -> dict[str, Any]:
    """Every SGD run (LR, batch-size and BN sweeps) and the full-batch GD run."""
    from tqdm.auto import tqdm

    data = load_data(config, device)
    runs = {}
    for spec in tqdm(run_specs(config), desc="runs", leave=False):
        runs[spec["label"]] = run_sgd(config, device=device, seed=seed, spec=spec, data=data)
    eos = run_eos(config, device=device, seed=seed, data=data)
    return {"runs": runs, "eos": eos, "n_train": len(data[0]), "n_test": len(data[2])}


# --------------------------------------------------------------------------- measurements
def smoothed_max(values: np.ndarray, width: int = 3) -> float:
    """Maximum of the ``width``-point moving average (robust to single catapult spikes)."""
    values = np.asarray(values, dtype=float)
    if len(values) < width:
        return float(np.max(values))
    return float(np.max(np.convolve(values, np.ones(width) / width, mode="valid")))


def second_half(run: dict[str, Any], key: str) -> np.ndarray:
    return run[key][run["step"] > run["step"][-1] / 2]


def after_start(run: dict[str, Any], key: str) -> np.ndarray:
    return run[key][run["step"] > 0]


def break_even_index(run: dict[str, Any]) -> int:
    """Index of the peak of the 3-point-smoothed λ_H¹ (where the trajectory turns; the paper's break-even)."""
    lam = np.asarray(run["lambda_h"], dtype=float)
    if len(lam) < 3:
        return int(np.argmax(lam))
    return int(np.argmax(np.convolve(lam, np.ones(3) / 3, mode="valid"))) + 1


def _lr_runs(results: dict[str, Any], config: Config) -> list[dict[str, Any]]:
    return sorted([r for r in results["runs"].values() if r["sweep"] == "lr"], key=lambda r: r["lr"])


def _run(results: dict[str, Any], lr: float, batch_size: int) -> dict[str, Any]:
    return results["runs"][_label(lr, batch_size)]


def claims(results: dict[str, Any], config: Config) -> list[Claim]:
    """The brief's nine checkable claims plus the sanity check, measured on this run."""
    lr_runs = _lr_runs(results, config)
    lrs = [r["lr"] for r in lr_runs]
    lo, hi = lr_runs[0], lr_runs[-1]
    out: list[Claim] = []

    smax = [smoothed_max(r["lambda_h"]) for r in lr_runs]
    out.append(Claim(
        "1-max-lambda-H-decreases-with-lr",
        "Max of the 3-point-smoothed λ_H¹ strictly decreases with η; smallest-η value ≥ 2× largest-η value",
        {f"η={lr:g}": v for lr, v in zip(lrs, smax)}, "strictly decreasing and ratio ≥ 2",
        all(a > b for a, b in zip(smax, smax[1:])) and smax[0] >= 2 * smax[-1]))

    med = {r["lr"]: float(np.median(second_half(r, "lambda_h"))) for r in lr_runs}
    ok_upper = all(med[lr] <= 2 / lr for lr in lrs)
    ok_lower = all(med[lr] >= 0.3 * 2 / lr for lr in lrs if lr >= 0.1)
    out.append(Claim(
        "2-lambda-H-below-2-over-lr",
        "Second-half median of λ_H¹ ≤ 2/η for every η, and ≥ 0.3·(2/η) for η ≥ 0.1",
        {f"η={lr:g}": {"median": med[lr], "2/η": 2 / lr} for lr in lrs},
        "median ≤ 2/η; median ≥ 0.3·2/η for η ≥ 0.1", ok_upper and ok_lower))

    mk = [float(np.median(after_start(r, "lambda_k"))) for r in lr_runs]
    out.append(Claim(
        "3-lambda-K-decreases-with-lr",
        f"Median λ_K¹ at η={lrs[0]:g} ≥ 1.5× that at η={lrs[-1]:g}",
        {f"η={lr:g}": v for lr, v in zip(lrs, mk)}, "ratio ≥ 1.5", mk[0] >= 1.5 * mk[-1]))

    tk = [float(np.median(after_start(r, "trace_k"))) for r in lr_runs]
    out.append(Claim(
        "4-trace-K-decreases-with-lr",
        f"Median Tr K decreases with η; ratio ≥ 2 between η={lrs[0]:g} and η={lrs[-1]:g}",
        {f"η={lr:g}": v for lr, v in zip(lrs, tk)}, "strictly decreasing and ratio ≥ 2",
        all(a > b for a, b in zip(tk, tk[1:])) and tk[0] >= 2 * tk[-1]))

    small, large = min(config.batch_sizes), max(config.batch_sizes)
    rs, rl = _run(results, config.batch_lr, small), _run(results, config.batch_lr, large)
    m5 = {f"S={small}": {"smoothed max λ_H¹": smoothed_max(rs["lambda_h"]),
                         "median Tr K": float(np.median(after_start(rs, "trace_k")))},
          f"S={large}": {"smoothed max λ_H¹": smoothed_max(rl["lambda_h"]),
                         "median Tr K": float(np.median(after_start(rl, "trace_k")))}}
    out.append(Claim(
        "5-larger-batch-sharper",
        f"At η={config.batch_lr:g}, S={large} has a higher smoothed max λ_H¹ and a higher median Tr K than S={small}",
        m5, "both larger for the larger batch",
        m5[f"S={large}"]["smoothed max λ_H¹"] > m5[f"S={small}"]["smoothed max λ_H¹"]
        and m5[f"S={large}"]["median Tr K"] > m5[f"S={small}"]["median Tr K"]))

    m6, ok6 = {}, True
    for r in lr_runs:
        peak = break_even_index(r)
        ratio = float(np.max(r["lambda_h"][:peak + 1]) / r["lambda_h"][0])
        pre = slice(0, peak + 1)
        rho = float(spearmanr(r["lambda_h"][pre], r["lambda_k"][pre]).statistic) if peak >= 2 else float("nan")
        m6[f"η={r['lr']:g}"] = {"peak/initial": ratio, "pre-peak Spearman": rho, "pre-peak probes": peak + 1}
        ok6 = ok6 and ratio >= 5 and np.isfinite(rho) and rho >= 0.4
    out.append(Claim(
        "6-progressive-sharpening",
        "Every LR-sweep run: peak λ_H¹ ≥ 5× its initial value, and λ_H¹, λ_K¹ rise together before the peak",
        m6, "peak/initial ≥ 5 and pre-peak Spearman ≥ 0.4", ok6))

    eos = results["eos"]
    lam, thr = eos["lambda_h"], 2 / eos["lr"]
    reached = np.nonzero(lam >= thr)[0]
    if len(reached):
        i0 = int(reached[0])
        band = lam[i0:] / thr
        loss_at = eos["loss"][i0:]
        m7 = {"step reached": int(eos["step"][i0]), "2/η": thr, "min ratio after": float(band.min()),
              "max ratio after": float(band.max()), "loss at reach": float(loss_at[0]), "final loss": float(loss_at[-1])}
        ok7 = bool(np.all(np.abs(band - 1) <= 0.2)) and loss_at[-1] < loss_at[0]
    else:
        m7, ok7 = {"max λ_H¹": float(lam.max()), "2/η": thr}, False
    out.append(Claim(
        "7-edge-of-stability",
        f"Full-batch GD (η={eos['lr']:g}, {eos['examples']} examples): sharpness reaches 2/η, then stays within "
        "±20 % of it while the loss still decreases overall",
        m7, "all later probes in [0.8, 1.2]·2/η and final loss < loss at reach", ok7))

    def cond_after(r):
        i = break_even_index(r)
        return float(np.median(r["lambda_k_star"][i:] / r["lambda_k"][i:]))
    def rank_after(r):
        i = break_even_index(r)
        return float(np.median(r["trace_k"][i:] / r["lambda_k"][i:]))
    c_lo, c_hi = cond_after(lo), cond_after(hi)
    out.append(Claim(
        "8-conditioning-K (may fail)",
        f"Conjecture 2: median λ_K^*/λ_K¹ after break-even is higher for η={hi['lr']:g} than for η={lo['lr']:g}",
        {f"λ_K^*/λ_K¹ η={lo['lr']:g}": c_lo, f"λ_K^*/λ_K¹ η={hi['lr']:g}": c_hi,
         f"(Tr K/λ_K¹ η={lo['lr']:g})": rank_after(lo), f"(Tr K/λ_K¹ η={hi['lr']:g})": rank_after(hi)},
        "λ_K^*/λ_K¹: largest η > smallest η", c_hi > c_lo))

    out.append(Claim(
        "9-test-accuracy (may fail)",
        f"Final test accuracy is not lower for η={hi['lr']:g} than for η={lo['lr']:g}",
        {f"η={r['lr']:g}": r["test_accuracy"] for r in lr_runs}, "largest η ≥ smallest η",
        hi["test_accuracy"] >= lo["test_accuracy"]))

    bn_runs = sorted([r for r in results["runs"].values() if r["bn"]], key=lambda r: r["lr"])
    if len(bn_runs) >= 2:  # full profile only: the SimpleCNN-with-BN sweep
        mbn = {f"η={r['lr']:g}": float(np.median(after_start(r, "lambda_k"))) for r in bn_runs}
        vals = list(mbn.values())
        out.append(Claim(
            "10-batchnorm-small-lr",
            f"With batch norm, the smallest η ({bn_runs[0]['lr']:g}) still gives a large λ_K¹: median λ_K¹ ≥ 1.5× "
            f"that at the largest η ({bn_runs[-1]['lr']:g})", mbn, "ratio ≥ 1.5", vals[0] >= 1.5 * vals[-1]))

    finite = {r["label"]: bool(not r["diverged"] and np.all(np.isfinite(r["lambda_h"]))
                               and np.all(np.isfinite(r["step_loss"])) and np.all(np.isfinite(r["trace_k"])))
              for r in results["runs"].values()}
    acc = {r["label"]: r["final_train_accuracy"] for r in results["runs"].values() if r["lr"] >= 0.1 and not r["bn"]}
    out.append(Claim(
        "sanity", "Every run stays finite (no NaNs); final training accuracy ≥ 0.8 for η ≥ 0.1",
        {"finite": finite, "train accuracy": acc}, "all finite; accuracy ≥ 0.8",
        all(finite.values()) and all(a >= 0.8 for a in acc.values())))
    return out


# --------------------------------------------------------------------------- figures
def _colors(n: int):
    cmap = plt.get_cmap("viridis")
    return [cmap(0.1 + 0.75 * i / max(1, n - 1)) for i in range(n)]


def _sweeps(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    runs = list(results["runs"].values())
    ref_lr = next((r["lr"] for r in runs if r["sweep"] == "batch"), None)
    lr_sweep = sorted([r for r in runs if r["sweep"] == "lr"], key=lambda r: r["lr"])
    batch_sweep = sorted([r for r in runs if r["sweep"] == "batch" or (r["sweep"] == "lr" and r["lr"] == ref_lr)],
                         key=lambda r: r["batch_size"])
    out = {"learning rate (S fixed)": lr_sweep, "batch size (η fixed)": batch_sweep}
    bn = sorted([r for r in runs if r["sweep"] == "bn"], key=lambda r: r["lr"])
    if bn:
        out["with batch norm"] = bn
    return out


def figure_sharpness(results: dict[str, Any]):
    """λ_H¹ (top) and λ_K¹ (bottom) vs epoch, for each sweep, with the 2/η stability lines."""
    sweeps = _sweeps(results)
    fig, axes = plt.subplots(2, len(sweeps), figsize=(5.2 * len(sweeps), 7), sharex=True, squeeze=False)
    for j, (name, runs) in enumerate(sweeps.items()):
        for r, c in zip(runs, _colors(len(runs))):
            axes[0, j].semilogy(r["epoch"], r["lambda_h"], "-o", ms=2.5, color=c, label=r["label"])
            axes[1, j].semilogy(r["epoch"], r["lambda_k"], "-o", ms=2.5, color=c, label=r["label"])
        for lr in sorted({r["lr"] for r in runs}):
            c = _colors(len(runs))[[r["lr"] for r in runs].index(lr)] if len({r["lr"] for r in runs}) > 1 else "k"
            axes[0, j].axhline(2 / lr, ls="--", lw=1, color=c, label=f"2/η = {2 / lr:g}")
        axes[0, j].set(title=f"sweep over {name}", ylabel="λ_H¹ (top Hessian eigenvalue)")
        axes[1, j].set(xlabel="epoch", ylabel="λ_K¹ (top eigenvalue of K)")
        axes[0, j].legend(fontsize=8, ncol=2)
    fig.suptitle("Curvature along SGD trajectories: the break-even point", y=1.0)
    fig.tight_layout()
    return fig


def figure_plane(results: dict[str, Any]):
    """Trajectories in the (λ_H¹, λ_K¹) plane; a circle marks the start, a square the end."""
    sweeps = _sweeps(results)
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 4.3), squeeze=False)
    for ax, (name, runs) in zip(axes[0], sweeps.items()):
        for r, c in zip(runs, _colors(len(runs))):
            ax.loglog(r["lambda_h"], r["lambda_k"], "-", lw=1.2, color=c, label=r["label"])
            ax.loglog(r["lambda_h"][:1], r["lambda_k"][:1], "o", color=c)
            ax.loglog(r["lambda_h"][-1:], r["lambda_k"][-1:], "s", color=c)
            i = break_even_index(r)
            ax.loglog(r["lambda_h"][i:i + 1], r["lambda_k"][i:i + 1], "*", ms=11, color=c, mec="k", mew=0.5)
        ax.set(xlabel="λ_H¹", ylabel="λ_K¹", title=f"sweep over {name}\n(● start, ★ peak of λ_H¹, ■ end)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


FLOAT64_FLOOR = 1e-15  # relative size below which an eigenvalue of K is rounding noise in float64


def figure_covariance(results: dict[str, Any]):
    """Tr K, the conditioning λ_K^*/λ_K¹ and Tr K/λ_K¹ vs epoch, for the LR and batch-size sweeps."""
    sweeps = _sweeps(results)
    fig, axes = plt.subplots(len(sweeps), 3, figsize=(14, 3.4 * len(sweeps)), squeeze=False)
    for i, (name, runs) in enumerate(sweeps.items()):
        for r, c in zip(runs, _colors(len(runs))):
            axes[i, 0].semilogy(r["epoch"], r["trace_k"], color=c, label=r["label"])
            # ratios below ~1e-15 are float64 rounding of a (near-)zero eigenvalue: show them at the floor
            ratio = np.maximum(r["lambda_k_star"] / r["lambda_k"], FLOAT64_FLOOR)
            axes[i, 1].semilogy(r["epoch"], ratio, color=c, label=r["label"])
            axes[i, 2].plot(r["epoch"], r["trace_k"] / r["lambda_k"], color=c, label=r["label"])
        axes[i, 0].set(ylabel="Tr K", title=f"Tr K — sweep over {name}")
        axes[i, 1].axhline(FLOAT64_FLOOR, color="0.5", ls=":", lw=1, label="float64 resolution")
        axes[i, 1].set(ylabel="λ_K^* / λ_K¹", title="conditioning λ_K^*/λ_K¹ (higher: better)")
        axes[i, 2].set(ylabel="Tr K / λ_K¹", title="Tr K / λ_K¹ (effective rank)")
        axes[i, 0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def figure_overshoot(results: dict[str, Any], epochs: float = 4.0):
    """α* (how far a step can be stretched before the loss rises by 20 %) and λ_H¹, early in training."""
    runs = _sweeps(results)["learning rate (S fixed)"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for r, c in zip(runs, _colors(len(runs))):
        early = r["epoch"] <= epochs
        a.semilogy(r["epoch"][early], r["alpha_star"][early], "-o", ms=3, color=c, label=f"α*, {r['label']}")
        a.semilogy(r["epoch"][early], r["lambda_h"][early] / r["lambda_h"][0], ":", color=c,
                   label=f"λ_H¹/λ_H¹(0), {r['label']}")
    a.set(xlabel="epoch", ylabel="α* (solid) and λ_H¹ / initial (dotted), log scale",
          title=f"early phase (first {epochs:g} epochs)")
    a.legend(fontsize=7, ncol=2)
    for run in results["runs"].values():
        b.loglog(run["lambda_h"], run["alpha_star"], "o", ms=3, alpha=0.6, label=run["label"])
    b.set(xlabel="λ_H¹", ylabel="α*", title="α* against λ_H¹ (all runs, all probes)")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_eos(results: dict[str, Any]):
    """Full-batch GD: sharpness vs step against 2/η, and the training loss."""
    eos = results["eos"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.plot(eos["step"], eos["lambda_h"], "-o", ms=2.5, label="λ_H¹ (sharpness)")
    a.axhline(2 / eos["lr"], color="k", ls="--", label=f"2/η = {2 / eos['lr']:g}")
    a.axhspan(0.8 * 2 / eos["lr"], 1.2 * 2 / eos["lr"], color="k", alpha=0.07, label="±20 %")
    a.set(xlabel="step", ylabel="λ_H¹", title=f"Full-batch GD, η = {eos['lr']:g}, {eos['examples']} examples")
    a.legend()
    b.semilogy(np.arange(1, len(eos["step_loss"]) + 1), eos["step_loss"], lw=1)
    b.set(xlabel="step", ylabel="training loss (cross-entropy, log scale)", title="training loss (every step)")
    fig.tight_layout()
    return fig


def figure_accuracy(results: dict[str, Any]):
    """Final test (and train) accuracy vs η and vs S."""
    sweeps = _sweeps(results)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    lr_runs, b_runs = sweeps["learning rate (S fixed)"], sweeps["batch size (η fixed)"]
    for ax, runs, key, xlabel in ((axes[0], lr_runs, "lr", "learning rate η"),
                                  (axes[1], b_runs, "batch_size", "batch size S")):
        x = [r[key] for r in runs]
        ax.semilogx(x, [r["test_accuracy"] for r in runs], "-o", label="test")
        ax.semilogx(x, [r["final_train_accuracy"] for r in runs], "--s", label="train")
        ax.set(xlabel=xlabel + " (log scale)", ylabel="final accuracy", title=f"final accuracy vs {xlabel.split()[-1]}")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend()
    fig.tight_layout()
    return fig


def run_labels(results: dict[str, Any]) -> list[str]:
    return list(results["runs"])


def draw_run(results: dict[str, Any], run: str | None = None, quantity: str = "λ_H¹ and λ_K¹"):
    """Widget view of one cached run: curvature vs epoch with 2/η, or the loss and accuracy."""
    run = run or next(iter(results["runs"]))
    if run not in results["runs"]:
        raise ValueError(f"unknown run {run!r}: cached runs are {', '.join(results['runs'])}")
    r = results["runs"][run]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if quantity == "λ_H¹ and λ_K¹":
        ax.semilogy(r["epoch"], r["lambda_h"], "-o", ms=2.5, label="λ_H¹")
        ax.semilogy(r["epoch"], r["lambda_k"], "-s", ms=2.5, label="λ_K¹")
        ax.axhline(2 / r["lr"], color="k", ls="--", label=f"2/η = {2 / r['lr']:g}")
        ax.set_ylabel("eigenvalue (log scale)")
    elif quantity == "Tr K and conditioning":
        ax.semilogy(r["epoch"], r["trace_k"], label="Tr K")
        ax.semilogy(r["epoch"], r["lambda_k_star"] / r["lambda_k"], label="λ_K^*/λ_K¹")
        ax.set_ylabel("value (log scale)")
    elif quantity == "loss and accuracy":
        ax.semilogy(r["epoch"], r["loss"], label="loss (probe subset)")
        ax.semilogy(r["epoch"], 1 - r["accuracy"], label="error rate (probe subset)")
        ax.set_ylabel("log scale")
    else:
        raise ValueError(f"unknown quantity {quantity!r}: allowed values are {', '.join(map(repr, QUANTITIES))}")
    ax.set(xlabel="epoch", title=f"{run}: test accuracy {r['test_accuracy']:.3f}")
    ax.legend()
    fig.tight_layout()
    return fig


QUANTITIES = ("λ_H¹ and λ_K¹", "Tr K and conditioning", "loss and accuracy")


def widget_view(results: dict[str, Any]):
    """``SliderFigure`` over the cached runs (reads ``results`` only, never trains)."""
    from curvnb.widgets import SliderFigure

    return SliderFigure(functools.partial(draw_run, results), run=run_labels(results), quantity=list(QUANTITIES))
