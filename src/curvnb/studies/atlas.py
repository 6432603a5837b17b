"""Atlas: one task, every optimizer, every curvature lens (the book's own synthesis).

MNIST-1D (generated offline by :func:`curvnb.data.load_mnist1d`), a bias-free ReLU MLP
(``40 → 128 → 128 → 10``, 22 784 weights) and the reversible network of the same width and depth
(:class:`curvnb.models.ReversibleNet`, width 128, expansion 128, 2 coupling blocks: 33 024
weights), trained by :func:`curvnb.train.train` with

* on the MLP: SGD at a small and a large learning rate, SGD with momentum 0.9, Adam at its
  selected rate and at a tenth of it, fractional K-FAC (:class:`curvnb.optim.BlockDiagonalNaturalGradient`,
  cross-entropy factors) at α = ½ and α = 1, and Alice (:class:`curvnb.optim.Alice`, the reference form);
* on the reversible net: exact Gauss–Newton (:class:`curvnb.optim.ExactGaussNewton`) and SGD and
  Adam as its own baselines.

Every lens comes from :mod:`curvnb.curvature`: λ_H¹ (:func:`hessian_eigenvalues`), λ_K¹ and Tr K
(:func:`gradient_covariance_eigenvalues`, :func:`gradient_covariance_trace`), the glass density ρ
and Hessian-diagonal magnitude h̄ (:func:`curvnb.curvature.glass.gradient_variation` at σ = ``sigma``),
the NTK's movement from its initial value, ‖K_t − K_0‖_F/‖K_0‖_F (:func:`ntk_relative_change`), and its
kernel distance ``1 − cos(K_t, K_0)`` (:func:`empirical_ntk`, :func:`ntk_distance`; the laziness
findings were registered on this one), and the linear CKA of the last hidden representation with its initial value
(:func:`linear_cka`); per-layer gradient norms at initialization; test loss and accuracy, gradient
evaluations and training wall time (probes excluded).

Pre-registered protocol (written here and committed before the chapter was first run):

* **Gradient evaluations.** One evaluation is one forward and backward pass over a mini-batch.
  SGD, SGD-momentum and Adam spend 1 per step; K-FAC spends 1 per step plus ``C = 10`` (one
  backward pass per class) every ``kfac_update_every`` steps when it refreshes its factors
  (:func:`evaluation_counts`); Alice spends 3 on its curvature steps and 1 on quick steps
  (:meth:`Alice.gradient_evaluations`); exact GN spends 1 per step (one forward pass and one
  least-squares solve per half-block, no backward pass). Every run stops at the last step within
  ``budget`` evaluations: the *equal-evaluations* comparison is each run's last probe.
* **Learning rates.** Every tuned optimizer gets a grid of five rates half a decade apart
  (``lr_grids``). On ``select_seeds`` selection seeds (never used for the findings) each grid rate
  is trained for ``select_budget`` evaluations; the selected rate has the lowest mean validation
  loss at the end (a diverged run counts as +∞). The validation split is held out of the training
  data; the test split is never used to choose anything. **SGD large** is the largest SGD grid rate
  whose selection runs stayed finite and ended below their validation loss at initialization;
  **SGD small** is SGD large ÷ 10. **Adam** runs at its selected rate, **Adam ÷ 10** at a tenth of it.
* **Matched training loss.** Training loss is measured on a fixed probe subset of ``probe_n``
  training examples. The target is 1.05 × the largest final training loss over every run and seed
  (so every run reaches it); a run's matched probe is the first probe whose loss is ≤ the target.
* **Seeds.** ``seeds`` independent seeds (initialization, batch order, optimizer noise); the MLP
  runs of one seed share their initialization, so ratios are paired by seed. Each finding's
  statistic is a ratio of medians over seeds with a 95 % percentile-bootstrap interval
  (:func:`curvnb.stats.bootstrap_interval`, seeds resampled jointly), and its answer is *yes* only
  when the whole interval lies on the stated side of the threshold.

Findings (statistic; threshold), fixed before the first run:

1. ``kfac-lazy`` — NTK kernel distance at matched loss, median K-FAC α=1 / median Adam (MLP); yes iff interval < 1.
2. ``gn-lazy`` — the same, median exact GN / median Adam on the reversible net; yes iff interval < 1.
3. ``break-even-sgd`` — λ_K¹ at the matched probe, median SGD large / median SGD small; yes iff interval < 1
   (revised, see below).
4. ``break-even-adam`` — the same for Adam / Adam ÷ 10; yes iff interval < 1 (revised, see below).
5. ``alice-glass`` — glass density ρ at matched loss, median Alice / median Adam; yes iff interval < 1.
6. ``kfac-first`` — gradient evaluations to the target loss, median K-FAC α=1 / median SGD-momentum;
   yes iff interval < 1.

Revision 1 (after the first run of the chapter, finding seeds 0, 1, 2; thresholds unchanged):

* Findings 3 and 4 were pre-registered on the *peak* λ_K¹ from initialization up to the matched
  probe. The MLP runs of one seed share their initialization and λ_K¹ fell from its initial value
  in every run, so that peak was the common initial value and the ratio was 1 by construction; the
  statistic is now λ_K¹ *at* the matched probe.
* Probes every 50 steps were too coarse for the matched-loss comparison (most runs reached the
  target at the first or second probe, and the gradient-evaluation counts of finding 6 tied); they
  are now every 25 steps.
* The selected rates of SGD-momentum, K-FAC α = ½ and Alice were at the upper end of their grids;
  those grids moved up half a decade (still five rates each).
* The findings are answered on new seeds (``seed·1000 + 100 + k``), none of which entered the first
  run; the selection seeds are unchanged. First-run answers (seeds 0–2, old settings): kfac-lazy
  yes (0.10 [0.081, 0.10]), gn-lazy yes (0.52 [0.35, 0.84]), alice-glass no (2.2 [1.1, 2.9]),
  kfac-first no (1 [1, 1], a tie at the probe resolution), break-even-sgd and -adam no (1 [1, 1],
  the defect above).
"""
from __future__ import annotations

import functools
import html
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from curvnb.claims import Claim
from curvnb.config import single_thread
from curvnb.curvature import (empirical_ntk, gradient_covariance_eigenvalues, gradient_covariance_trace,
                              hessian_eigenvalues, linear_cka, loss_and_grad, ntk_distance,
                              ntk_relative_change, unflatten_like)
from curvnb.curvature.glass import gradient_variation
from curvnb.figures import panels
from curvnb.init_stats import hidden_states
from curvnb.models import ReversibleNet, deep_mlp
from curvnb.optim import Alice, BlockDiagonalNaturalGradient, ExactGaussNewton
from curvnb.stats import bootstrap_interval, median_ratio
from curvnb.train import evaluate, train

TITLE = "Atlas: one task, every optimizer, every curvature lens"
COST = {"quick": "≈2.5 min on 2 shared CPU cores (130 s CPU time, measured)",
        "full": "not measured; for one GPU (CIFAR-10 from a local folder, 8 seeds)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}

#: Every run of the chapter: (label, model, base optimizer whose grid/rule sets its rate).
RUNS = ("sgd-small", "sgd-large", "sgd-mom", "adam", "adam-small", "kfac-half", "kfac-1", "alice",
        "gn", "rev-sgd", "rev-adam")
NAMES = {"sgd-small": "SGD (small lr)", "sgd-large": "SGD (large lr)", "sgd-mom": "SGD-momentum",
         "adam": "Adam", "adam-small": "Adam (lr ÷ 10)", "kfac-half": "K-FAC α=½", "kfac-1": "K-FAC α=1",
         "alice": "Alice", "gn": "exact GN (rev)", "rev-sgd": "SGD (rev)", "rev-adam": "Adam (rev)"}
REVERSIBLE = ("gn", "rev-sgd", "rev-adam")
#: The optimizers whose rate is selected on validation data, and the run each one's rate feeds.
TUNED = ("sgd", "sgd-mom", "adam", "kfac-half", "kfac-1", "alice", "gn", "rev-sgd", "rev-adam")
BASE = {"sgd-small": "sgd", "sgd-large": "sgd", "adam-small": "adam"}
COLORS = {"sgd-small": "#56B4E9", "sgd-large": "#0072B2", "sgd-mom": "#009E73", "adam": "#E69F00",
          "adam-small": "#F0E442", "kfac-half": "#CC79A7", "kfac-1": "#D55E00", "alice": "#000000",
          "gn": "#D55E00", "rev-sgd": "#0072B2", "rev-adam": "#E69F00"}
NUM_CLASSES = 10
#: Lenses probed along every trajectory: key -> (short header, axis label, log scale).
LENSES = {
    "loss": ("train loss", "training loss (probe set)", True),
    "test_acc": ("test acc", "test accuracy", False),
    "lam_h": ("λ_H¹", r"$\lambda_H^1$ (top Hessian eig.)", True),
    "lam_k": ("λ_K¹", r"$\lambda_K^1$ (top grad. cov. eig.)", True),
    "tr_k": ("Tr K", r"$\mathrm{Tr}\,K$", True),
    "rho": ("glass ρ", r"glass density $\rho$", True),
    "hess": ("Hess. diag", r"mean $|H_{ii}|$ estimate", True),
    "ntk_move": ("NTK move", r"NTK change $\|K_t-K_0\|/\|K_0\|$", True),
    "ntk": ("NTK dist.", r"NTK distance $1-\cos(K_t,K_0)$", True),
    "cka": ("CKA", "CKA to init (last hidden)", False),
}
FINDINGS = ("kfac-lazy", "gn-lazy", "break-even-sgd", "break-even-adam", "alice-glass", "kfac-first")


def _half_decades(low_exponent: float) -> tuple[float, ...]:
    """Five rates half a decade apart from ``10**low_exponent``."""
    return tuple(float(f"{10 ** (low_exponent + k / 2):.3g}") for k in range(5))


DEFAULT_GRIDS = (("sgd", _half_decades(-2)), ("sgd-mom", _half_decades(-2.5)), ("adam", _half_decades(-3.5)),
                 ("kfac-half", _half_decades(-2)), ("kfac-1", _half_decades(-3)), ("alice", _half_decades(-3)),
                 ("gn", _half_decades(-1.5)), ("rev-sgd", _half_decades(-2)), ("rev-adam", _half_decades(-3.5)))


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"          # "mnist1d" | "cifar10" (local folder)
    data_folder: str = "data"
    num_samples: int = 5000           # MNIST-1D examples generated (80 % train, 20 % test)
    n_val: int = 500                  # validation examples held out of the training split
    width: int = 128                  # MLP hidden width = reversible feature width
    depth: int = 3                    # MLP weight matrices (2 hidden layers)
    rev_depth: int = 2                # coupling blocks (each has two hidden half-maps: depth-matched)
    rev_expansion: int = 128          # ≥ 2 × batch_size: exact GN's per-block solves are exact
    batch_size: int = 64
    budget: int = 400                 # gradient evaluations per reported run
    select_budget: int = 200          # gradient evaluations per learning-rate selection run
    probe_every: int = 25             # steps between lens probes
    probe_n: int = 256                # probe subset (training loss and every curvature lens)
    ntk_n: int = 32                   # examples for the NTK and the CKA
    seeds: int = 3
    select_seeds: int = 1
    lr_grids: tuple = DEFAULT_GRIDS
    kfac_damping: float = 0.1          # Tikhonov δ on both factors: (B + δ)^−α ∇W (A + δ)^−α
    kfac_update_every: int = 10
    sigma: float = 1e-3               # glass / Hessian-diagonal perturbation scale
    glass_samples: int = 1
    lanczos_tol: float = 1e-2


PROFILES = {
    "quick": Config(),
    "full": Config(dataset="cifar10", n_val=5000, width=512, rev_expansion=512, batch_size=256, budget=5000,
                   select_budget=1500, probe_every=250, probe_n=512, ntk_n=64, seeds=8, select_seeds=2,
                   glass_samples=2),
    # tiny: every code path in seconds (tests); its verdicts are no evidence
    "smoke": Config(num_samples=600, n_val=100, width=16, rev_expansion=32, batch_size=16, budget=24, select_budget=12,
                    probe_every=6, probe_n=32, ntk_n=8, lr_grids=tuple((name, lrs[1:4:2]) for name, lrs in DEFAULT_GRIDS),
                    kfac_update_every=4),
}


# --------------------------------------------------------------------------- data, models, optimizers
@functools.lru_cache(maxsize=2)
def _load(dataset: str, data_folder: str, num_samples: int, n_val: int, probe_n: int, device: str) -> dict:
    if dataset == "mnist1d":
        from curvnb.data import load_mnist1d
        xtr, ytr, xte, yte = load_mnist1d(num_samples, seed=42, device=device)
    elif dataset == "cifar10":
        from curvnb.data.local import load_cifar10  # raises a clear error naming the folder if missing
        xtr, ytr, xte, yte = load_cifar10(data_folder or None)
        xtr, xte = xtr.flatten(1), xte.flatten(1)
        mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
        xtr, xte, ytr, yte = ((xtr - mean) / std).to(device), ((xte - mean) / std).to(device), ytr.to(device), yte.to(device)
    else:
        raise ValueError(f"unknown dataset {dataset!r}: allowed values are 'mnist1d', 'cifar10'")
    if not 0 < n_val < len(xtr) - probe_n:
        raise ValueError(f"n_val={n_val} must leave more than probe_n={probe_n} training examples")
    perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(7)).to(xtr.device)
    val, fit = perm[:n_val], perm[n_val:]
    x, y = xtr[fit], ytr[fit]
    return {"train": (x, y), "val": (xtr[val], ytr[val]), "test": (xte, yte), "probe": (x[:probe_n], y[:probe_n])}


def load_data(config: Config, device: torch.device) -> dict:
    """``train`` (minus validation), ``val``, ``test`` and the fixed ``probe`` subset of ``train``."""
    return _load(config.dataset, config.data_folder, config.num_samples, config.n_val, config.probe_n, str(device))


def grid(config: Config, name: str) -> tuple[float, ...]:
    """The learning-rate grid of tuned optimizer ``name``."""
    grids = dict(config.lr_grids)
    if name not in grids:
        raise ValueError(f"no learning-rate grid for {name!r}: grids exist for {', '.join(grids)}")
    return tuple(grids[name])


def make_model(config: Config, name: str, in_dim: int, seed: int, device: torch.device) -> nn.Module:
    """The MLP, or for a reversible-net run the :class:`ReversibleNet`, initialized from ``seed``."""
    if name in REVERSIBLE:
        return ReversibleNet(in_dim, NUM_CLASSES, width=config.width, expansion=config.rev_expansion,
                             depth=config.rev_depth, seed=seed).to(device)
    return deep_mlp(config.depth, config.width, in_dim, NUM_CLASSES, seed=seed, device=device)


LOSS = nn.CrossEntropyLoss()


def make_optimizer(config: Config, name: str, model: nn.Module, lr: float, seed: int) -> torch.optim.Optimizer:
    """The optimizer of run or tuned name ``name`` at rate ``lr``."""
    base = BASE.get(name, name)
    if base in ("sgd", "rev-sgd"):
        return torch.optim.SGD(model.parameters(), lr=lr)
    if base == "sgd-mom":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if base in ("adam", "rev-adam"):
        return torch.optim.Adam(model.parameters(), lr=lr)
    if base in ("kfac-half", "kfac-1"):
        return BlockDiagonalNaturalGradient(model, lr, 0.5 if base == "kfac-half" else 1.0, damping=config.kfac_damping,
                                            loss="cross_entropy", update_every=config.kfac_update_every,
                                            on_nonfinite="mark")
    if base == "alice":
        return Alice(model.parameters(), lr=lr, seed=seed)
    if base == "gn":
        return ExactGaussNewton(model, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: allowed values are {', '.join(RUNS + TUNED)}")


def evaluation_counts(config: Config, name: str, steps: int) -> np.ndarray:
    """Gradient evaluations spent after 0, 1, …, ``steps`` steps (see the module docstring)."""
    n = np.arange(steps + 1)
    base = BASE.get(name, name)
    if base in ("kfac-half", "kfac-1"):   # a factor refresh before steps 1, u+1, 2u+1, …: C backward passes
        return n + NUM_CLASSES * -(-n // config.kfac_update_every)
    if base == "alice":
        probe = Alice([torch.zeros(1, requires_grad=True)])
        return np.concatenate([[0], np.cumsum([3 if probe.is_curvature_step(k) else 1 for k in range(1, steps + 1)])])
    return n


def steps_within(config: Config, name: str, budget: int) -> int:
    """The most steps whose gradient evaluations fit in ``budget``."""
    counts = evaluation_counts(config, name, budget)
    return int(np.searchsorted(counts, budget, side="right") - 1)


def make_step(name: str, train_seconds: list[float]) -> Callable:
    """``step_fn`` for :func:`curvnb.train.train` (each optimizer's own step call); it adds the
    step's wall time to ``train_seconds[0]`` and returns the batch loss (NaN when a step is refused)."""
    base = BASE.get(name, name)

    def step(model: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor) -> float:
        tic = time.perf_counter()
        try:
            if base == "gn":
                return float(opt.step(xb, yb))

            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = LOSS(model(xb), yb)
                loss.backward()
                return loss
            if base == "alice":
                try:
                    return float(opt.step(closure))
                except FloatingPointError:   # Alice refuses a non-finite step: the run diverged
                    return float("nan")
            loss = closure()
            if base in ("kfac-half", "kfac-1"):
                try:
                    opt.step(xb)
                except torch.linalg.LinAlgError:   # factors of non-finite parameters: the run diverged
                    return float("nan")
                return float("nan") if opt.diverged else loss.item()
            opt.step()
            return loss.item()
        finally:
            train_seconds[0] += time.perf_counter() - tic
    return step


# --------------------------------------------------------------------------- lenses
def representation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last hidden representation: the MLP's last hidden layer, the reversible net's last features."""
    with torch.no_grad():
        if isinstance(model, ReversibleNet):
            return model.features(x)
        *_, last = hidden_states([layer.weight[None] for layer in model.layers], x, activation=model.activation)
        return last[0]


def layer_grad_norms(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
    """‖∇_W L‖ of every trainable weight matrix (biases skipped), input to output."""
    params = [p for p in model.parameters() if p.requires_grad]
    _, g = loss_and_grad(model, LOSS, data)
    return [float(t.norm()) for p, t in zip(params, unflatten_like(g, params)) if p.dim() >= 2]


def lens_probe(config: Config, data: dict, train_seconds: list[float], seed: int) -> Callable[[nn.Module], dict]:
    """``probe(model) -> {lens: value}`` for :func:`curvnb.train.train`; the NTK and representation of
    the first call are the references of the kernel distance and the CKA."""
    probe = data["probe"]
    x_ntk = probe[0][:config.ntk_n]
    ref: dict[str, torch.Tensor] = {}

    def fn(model: nn.Module) -> dict:
        kernel = empirical_ntk(model, x_ntk, mode="trace").detach()
        rep = representation(model, x_ntk)
        if not ref:
            ref["K0"], ref["R0"] = kernel, rep
        test = evaluate(model, LOSS, data["test"])
        glass = gradient_variation(model, LOSS, probe, [config.sigma], num_samples=config.glass_samples, seed=seed)
        return {"test_loss": test["loss"], "test_acc": test["accuracy"],
                "lam_h": float(hessian_eigenvalues(model, LOSS, probe, k=1, tol=config.lanczos_tol, seed=seed).eigenvalues[0]),
                "lam_k": float(gradient_covariance_eigenvalues(model, LOSS, probe, k=1)[0]),
                "tr_k": gradient_covariance_trace(model, LOSS, probe),
                "rho": float(glass["rho"][0]), "hess": float(glass["hess"][0]),
                "ntk_move": ntk_relative_change(ref["K0"], kernel),
                "ntk": ntk_distance(ref["K0"], kernel), "cka": linear_cka(ref["R0"], rep),
                "train_seconds": train_seconds[0]}
    return fn


# --------------------------------------------------------------------------- runs
def train_one(config: Config, *, device: torch.device, seed: int, name: str, lr: float, run_seed: int,
              budget: int, lenses: bool) -> dict:
    """One run of ``name`` at ``lr`` from initialization ``run_seed`` for ``budget`` gradient evaluations.

    With ``lenses`` every lens is probed every ``probe_every`` steps (training loss on the probe
    subset); without, only the validation loss at the start and the end (learning-rate selection)."""
    data = load_data(config, device)
    x, y = data["train"]
    torch.manual_seed(run_seed)
    model = make_model(config, name, x.shape[1], run_seed, x.device)
    opt = make_optimizer(config, name, model, lr, seed=run_seed)
    steps = steps_within(config, name, budget)
    train_seconds = [0.0]
    with single_thread(device):
        out: dict[str, Any] = {"name": name, "lr": lr, "run_seed": run_seed, "steps": steps}
        if lenses:
            out["grad_norms_init"] = layer_grad_norms(model, data["probe"])
            hist = train(model, opt, LOSS, (x, y), steps=steps, batch_size=config.batch_size,
                         probe_every=config.probe_every, probes={"lens": lens_probe(config, data, train_seconds, run_seed)},
                         seed=run_seed, step_fn=make_step(name, train_seconds), progress=False,
                         probe_data=data["probe"], description=name)
        else:
            hist = train(model, opt, LOSS, (x, y), steps=steps, batch_size=config.batch_size, probe_every=max(steps, 1),
                         seed=run_seed, step_fn=make_step(name, train_seconds), progress=False,
                         probe_data=data["val"], description=name)
    step = np.array(hist["step"])
    out.update(step=step, evals=evaluation_counts(config, name, steps)[step], loss=np.array(hist["loss"]),
               accuracy=np.array(hist["accuracy"]), diverged=bool(hist["diverged"]), seconds=train_seconds[0])
    if lenses:
        for key in hist["lens"][0]:
            out[key] = np.array([r[key] for r in hist["lens"]], dtype=float)
    return out


def seed_lists(config: Config, seed: int) -> tuple[list[int], list[int]]:
    """(finding seeds, selection seeds): disjoint, both derived from the chapter seed."""
    if config.seeds < 3:
        raise ValueError(f"findings need at least 3 seeds, got seeds={config.seeds}")
    # Finding seeds start at 100 (revision 1): seeds 0, 1, 2 were spent on the first run.
    return ([seed * 1000 + 100 + k for k in range(config.seeds)],
            [seed * 1000 + 900 + k for k in range(config.select_seeds)])


def _direct(config: Config, device: torch.device, seed: int) -> Callable:
    def cached(fn: Callable, key: str | None = None, **kwargs: Any) -> Any:
        return fn(config, device=device, seed=seed, **kwargs)
    return cached


def select_score(runs: Sequence[dict]) -> float:
    """The selection rule's score: mean final validation loss over the selection seeds (+∞ if any diverged)."""
    last = [r["loss"][-1] if not r["diverged"] else math.inf for r in runs]
    return float(np.mean(last)) if all(np.isfinite(last)) else math.inf


def choose_rates(config: Config, selection: dict) -> dict[str, float]:
    """Every run's learning rate from the selection runs ``{(tuned name, lr): [runs]}`` (the rules above)."""
    chosen = {name: min(grid(config, name), key=lambda lr: select_score(selection[(name, lr)])) for name in TUNED}
    stable = [lr for lr in grid(config, "sgd")
              if all(not r["diverged"] and np.isfinite(r["loss"][-1]) and r["loss"][-1] < r["loss"][0]
                     for r in selection[("sgd", lr)])]
    large = max(stable) if stable else min(grid(config, "sgd"))
    rates = {name: chosen[name] for name in RUNS if name in chosen}
    rates.update({"sgd-large": large, "sgd-small": large / 10, "adam-small": chosen["adam"] / 10})
    return rates


def run(config: Config, *, device: torch.device, seed: int, cached: Callable | None = None) -> dict:
    """Every run of the chapter. ``cached(fn, key=..., **kwargs)`` (e.g. ``Chapter.cached``) caches each
    (optimizer, rate, seed) run on its own; without it they are computed directly."""
    cached = cached or _direct(config, device, seed)
    seeds, select_seeds = seed_lists(config, seed)
    selection = {(name, lr): [cached(train_one, key=f"select-{name}-{lr:g}-{s}", name=name, lr=lr, run_seed=s,
                                     budget=config.select_budget, lenses=False) for s in select_seeds]
                 for name in TUNED for lr in grid(config, name)}
    rates = choose_rates(config, selection)
    runs = {name: [cached(train_one, key=f"run-{name}-{s}", name=name, lr=rates[name], run_seed=s,
                          budget=config.budget, lenses=True) for s in seeds] for name in RUNS}
    results = {"config": config, "seeds": seeds, "select_seeds": select_seeds, "rates": rates, "runs": runs,
               "selection": {k: [{"loss": r["loss"], "diverged": r["diverged"]} for r in v] for k, v in selection.items()}}
    results["matched"] = matched(results)
    return results


def run_chapter(ch) -> dict:
    """:func:`run` with every piece cached on disk through the chapter ``ch``."""
    return run(ch.config, device=ch.device, seed=ch.seed, cached=ch.cached)


# --------------------------------------------------------------------------- comparisons
def target_loss(runs: dict) -> float:
    """1.05 × the largest final training loss over every run and seed (diverged runs excluded)."""
    finals = [r["loss"][-1] for rs in runs.values() for r in rs if not r["diverged"] and np.isfinite(r["loss"][-1])]
    return 1.05 * max(finals)


def first_below(loss: np.ndarray, target: float) -> int:
    """Index of the first probe whose loss is ≤ ``target`` (−1 if none)."""
    hit = np.flatnonzero(np.asarray(loss) <= target)
    return int(hit[0]) if len(hit) else -1


def matched(results: dict) -> dict:
    """Per run: the matched probe index per seed and every lens there."""
    target = target_loss(results["runs"])
    out: dict[str, Any] = {"target": target, "index": {}, "values": {}}
    for name, rs in results["runs"].items():
        idx = [first_below(r["loss"], target) for r in rs]
        out["index"][name] = idx
        vals: dict[str, list[float]] = {}
        for key in (*LENSES, "evals", "train_seconds"):
            vals[key] = [float(r[key][i]) if i >= 0 else math.nan for r, i in zip(rs, idx)]
        out["values"][name] = vals
    return out


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
