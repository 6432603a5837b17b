"""The computation of the buffelli2024 chapter: configuration, profiles, seed streams and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.buffelli2024.report`,
claims, figures, widgets), so that editing those reuses cached results.

Units and seeds. A unit is one independent seed of the run: its network's fixed and initial weights
(stream ``init``) and its batch order (``order``). Learning rates are chosen on *selection* units
(streams ``select-*``) and every claim is tested on other, *test* units at the chosen rates; both
come from :mod:`curvnb.seeds` (chapter seed, stream, index), so no two chapter seeds share a run.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from curvnb.config import single_thread
from curvnb.curvature import empirical_ntk, linear_cka, ntk_distance
from curvnb.models import ReversibleNet
from curvnb.optim import ExactGaussNewton
from curvnb.seeds import declare_streams, torch_generator
from curvnb.train import train


OPTIMIZERS = ("gn", "adam", "sgd")
TUNED = ("gn", "adam")          # the optimizers whose learning rate is selected (on selection units)
REGIMES = ("full", "mini")
GROUPS = ("full", "mini", "rich")   # full batch, mini-batch, lazy-vs-rich control (mini-batch)
TARGET_FACTOR = 10.0            # full-batch speed: steps to a TARGET_FACTOR× lower training loss
DIVERGE_FACTOR = 10.0           # a unit diverged when its training loss is non-finite or exceeds this × its initial

STREAMS = declare_streams("buffelli2024", {
    "init": ("test", 64), "order": ("test", 64), "other": ("test", 1),
    "select-init": ("selection", 16), "select-order": ("selection", 16), "select-other": ("selection", 1),
    "condition": ("test", 1), "exact": ("test", 8)})
_ROLE_STREAMS = {"test": ("init", "order", "other"), "selection": ("select-init", "select-order", "select-other")}


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"           # "digits" | "mnist" | "cifar10"
    data_folder: str = "data"
    n_val: int = 300                  # validation examples held out of the training split (rate selection)
    test_seeds: int = 3               # test units: every claim is tested on these (one ensemble per run)
    selection_seeds: int = 2          # selection units: every learning rate of the grids, to choose one
    width: int = 64
    expansion: int = 256
    depth: int = 3
    init_scale: float = 1.0
    full_batch_n: int = 200           # ≤ expansion + 1: GN's per-block solves are exact
    full_steps: int = 40
    batch_size: int = 64              # ≤ expansion + 1 as well
    mini_steps: int = 150
    probe_every: int = 10
    kernel_every: int = 50            # NTK / CKA probes (a multiple of probe_every)
    gn_lrs: tuple[float, ...] = (0.3, 1.0, 3.0)
    adam_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    sgd_lr: float = 0.01              # reference curve only (not tuned, enters no claim)
    probe_n: int = 64                 # examples for the NTK and CKA
    rich_init_scale: float = 0.2      # control: smaller W at init and a narrower expansion,
    rich_expansion: int = 64          # so features must move to fit (batch_size ≤ rich_expansion + 1)


PROFILES = {
    "quick": Config(),
    "full": Config(dataset="mnist", n_val=5000, test_seeds=5, selection_seeds=3, width=784, expansion=1024, depth=4,
                   full_batch_n=1000, full_steps=100, batch_size=256, mini_steps=2000, probe_every=100,
                   kernel_every=500, probe_n=64, rich_expansion=256),
    # tiny: every code path in seconds (tests); its verdicts are no evidence
    "smoke": Config(test_seeds=2, selection_seeds=1, full_batch_n=40, expansion=48, full_steps=3, mini_steps=4,
                    probe_every=2, kernel_every=2, probe_n=8, rich_expansion=16, batch_size=16),
}


@dataclass(frozen=True)
class Units:
    """``n`` units of one role (``"test"`` or ``"selection"``) under a chapter seed."""

    chapter_seed: int
    role: str
    n: int

    def seeds(self, what: str) -> list[int]:
        """Derived seeds of ``what`` ∈ {"init", "order"} for units 0 … n−1."""
        stream = _ROLE_STREAMS[self.role][("init", "order").index(what)]
        return [STREAMS.seed(self.chapter_seed, stream, r) for r in range(self.n)]

    def other_generator(self) -> torch.Generator:
        """The draws of the "another mini-batch" probe (one per run, shared by its members)."""
        return STREAMS.torch(self.chapter_seed, _ROLE_STREAMS[self.role][2], 0)


def units(config: Config, chapter_seed: int) -> dict[str, Units]:
    """The chapter's selection and test units (their counts are fixed by the profile)."""
    if config.test_seeds < 2 or config.selection_seeds < 1:
        raise ValueError(f"need test_seeds ≥ 2 and selection_seeds ≥ 1, got {config.test_seeds}, {config.selection_seeds}")
    return {"selection": Units(chapter_seed, "selection", config.selection_seeds),
            "test": Units(chapter_seed, "test", config.test_seeds)}


# --------------------------------------------------------------------------- data and models
def load_data(config: Config, device: torch.device, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Train / validation / test tensors; the validation split is the last ``n_val`` training examples
    (the data set's fixed split, the same under every chapter seed)."""
    if config.dataset == "digits":
        from curvnb.data import load_digits_split
        xtr, ytr, xte, yte = load_digits_split(seed=0, dtype=dtype, device=device)
    elif config.dataset in ("mnist", "cifar10"):
        from curvnb.data.local import load_cifar10, load_mnist_like
        data = load_mnist_like(config.data_folder, name="mnist") if config.dataset == "mnist" else load_cifar10(config.data_folder)
        xtr, ytr, xte, yte = data
        xtr, xte = xtr.flatten(1).to(device, dtype), xte.flatten(1).to(device, dtype)
        ytr, yte = ytr.to(device), yte.to(device)
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}: allowed values are 'digits', 'mnist', 'cifar10'")
    if not 0 < config.n_val < len(xtr) - config.full_batch_n:
        raise ValueError(f"n_val must leave at least full_batch_n={config.full_batch_n} training examples")
    return {"x": xtr[:-config.n_val], "y": ytr[:-config.n_val], "x_val": xtr[-config.n_val:],
            "y_val": ytr[-config.n_val:], "x_test": xte, "y_test": yte}


def make_net(config: Config, in_dim: int, k: int, seed: int, *, init_scale: float | None = None,
             expansion: int | None = None, dtype: torch.dtype = torch.float32) -> ReversibleNet:
    """One network whose fixed and initial weights come from the derived ``seed`` (all 64 bits)."""
    return ReversibleNet(in_dim, k, width=config.width, expansion=expansion or config.expansion, depth=config.depth,
                         init_scale=config.init_scale if init_scale is None else init_scale, dtype=dtype,
                         generator=torch_generator(seed))


def make_ensemble(config: Config, in_dim: int, k: int, seeds: Sequence[int], device, *,
                  init_scale: float | None = None, expansion: int | None = None) -> ReversibleNet:
    """One network per derived seed, stacked (:meth:`ReversibleNet.stack`)."""
    nets = [make_net(config, in_dim, k, s, init_scale=init_scale, expansion=expansion) for s in seeds]
    return ReversibleNet.stack(nets).to(device)


class SeedMajor(nn.Module):
    """``x`` (N × R × in) ↦ logits (N × R × k) for a stacked network: what :func:`curvnb.train.train`
    sees, so its sampler draws examples along dim 0 for every member at once."""

    def __init__(self, net: ReversibleNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(0, 1)).transpose(0, 1)


def ensemble_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over members of each member's mean cross-entropy (so each member gets its own gradient)."""
    return Fn.cross_entropy(out.permute(0, 2, 1), y, reduction="none").mean(0).sum()


@torch.no_grad()
def member_eval(net: ReversibleNet, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-member mean loss and accuracy on ``x`` (R × n × in or n × in shared), ``y`` (R × n or n)."""
    out = net(x)
    y = y.expand(out.shape[:-1])
    loss = Fn.cross_entropy(out.permute(0, 2, 1), y, reduction="none").mean(-1)
    acc = (out.argmax(-1) == y).float().mean(-1)
    return loss.cpu().numpy(), acc.cpu().numpy()


@contextlib.contextmanager
def _threads(device: torch.device):
    """One intra-op thread on CPU: the per-step matrices are tiny, and on 2 cores OpenMP
    synchronisation cost more than it saved (measured); GPU runs are unaffected."""
    if device.type != "cpu":
        yield
        return
    with single_thread():
        yield


# --------------------------------------------------------------------------- one ensemble run
def _optimizer(opt_name: str, lr: float, net: ReversibleNet, R: int):
    """The optimizer and its raw step ``(model, opt, xb, yb) -> mean loss per member``."""
    if opt_name == "gn":
        opt = ExactGaussNewton(net, lr=lr)
        return opt, lambda m, o, xb, yb: o.step(xb.transpose(0, 1), yb.T)
    if opt_name not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {opt_name!r}: allowed values are {', '.join(map(repr, OPTIMIZERS))}")
    opt = (torch.optim.Adam if opt_name == "adam" else torch.optim.SGD)(net.parameters(), lr=lr)

    def step(m, o, xb, yb):
        o.zero_grad(set_to_none=True)
        loss = ensemble_loss(m(xb), yb)
        loss.backward()
        o.step()
        return loss.item() / R
    return opt, step


def _step_fn(net: ReversibleNet, base_step: Callable, xs, ys, batch_size: int, batches: dict | None,
             other: torch.Generator) -> Callable:
    """The training step; with ``batches`` it records each member's loss on the step's own batch and on
    another random training batch, before and after the step."""
    n = len(xs)

    def step_fn(m, o, xb, yb):
        if batches is not None:
            j = torch.randint(0, n, (batch_size,), generator=other).to(xs.device)
            xo, yo, xr, yr = xs[j].transpose(0, 1), ys[j].T, xb.transpose(0, 1), yb.T
            batches["before"].append(member_eval(net, xr, yr)[0])
            batches["others_before"].append(member_eval(net, xo, yo)[0])
        loss = base_step(m, o, xb, yb)
        if batches is not None:
            batches["after"].append(member_eval(net, xr, yr)[0])
            batches["others_after"].append(member_eval(net, xo, yo)[0])
        if not math.isfinite(loss):  # one diverged member must not stop the others (train() stops on NaN)
            per = member_eval(net, xb.transpose(0, 1), yb.T)[0]
            loss = float(np.mean(per[np.isfinite(per)])) if np.isfinite(per).any() else loss
        return loss
    return step_fn


def _metrics(net: ReversibleNet, x, y, data: dict, snapshots: list | None, per_kernel: int) -> Callable:
    """The probe: per-member loss/accuracy on train, validation and test; parameter snapshots for the
    NTK/CKA every ``per_kernel`` probes when ``snapshots`` is a list."""
    count = {"probe": 0}

    def metrics(_m) -> dict[str, list[float]]:
        out = {}
        for split, (xx, yy) in (("train", (x, y)), ("val", (data["x_val"], data["y_val"])),
                                ("test", (data["x_test"], data["y_test"]))):
            loss, acc = member_eval(net, xx, yy)
            out[f"{split}_loss"], out[f"{split}_acc"] = loss.tolist(), acc.tolist()
        if snapshots is not None and count["probe"] % per_kernel == 0:
            snapshots.append([p.detach().clone() for p in net.parameters()])
        count["probe"] += 1
        return out
    return metrics


def train_ensemble(config: Config, opt_name: str, lr: float, data: dict, unit: Units, *,
                   steps: int, batch_size: int, probe_every: int, device: torch.device,
                   full_batch: bool = False, kernel_every: int | None = None, track_batches: bool = False,
                   init_scale: float | None = None, expansion: int | None = None) -> dict:
    """Train one network per unit of ``unit`` (stacked) with ``opt_name`` at ``lr``; per-member histories.

    ``full_batch``: train on the first ``batch_size`` training examples, all of them every step.
    Returns arrays shaped (probes × units): ``train_loss``/``train_acc`` (whole training set of the
    run), ``val_loss``, ``test_loss``, ``test_acc``; ``diverged`` (per unit, :func:`diverged`); with
    ``track_batches`` the loss of the step's own mini-batch and of another random training mini-batch before and after every step (steps × units); with ``kernel_every``
    parameter snapshots for the NTK/CKA probes."""
    x, y = data["x"], data["y"]
    if full_batch:  # the first batch_size training examples, all of them at every step
        x, y = x[:batch_size], y[:batch_size]
    n, R = len(x), unit.n
    net = make_ensemble(config, x.shape[1], int(data["y"].max()) + 1, unit.seeds("init"), device,
                        init_scale=init_scale, expansion=expansion)
    # train()'s sampler draws a fixed index sequence j (seed 0); member r sees example perms[r, j], so each
    # unit's batch order is that sequence through its own permutation from its "order" stream.
    perms = torch.stack([torch.randperm(n, generator=torch_generator(s)) for s in unit.seeds("order")]).to(x.device)
    xs, ys = x[perms].transpose(0, 1), y[perms].T  # (n, R, in), (n, R)
    opt, base_step = _optimizer(opt_name, lr, net, R)
    batches = {"before": [], "after": [], "others_before": [], "others_after": []} if track_batches else None
    snapshots: list | None = [] if kernel_every else None
    per_kernel = (kernel_every or probe_every) // probe_every
    hist = train(SeedMajor(net), opt, ensemble_loss, (xs, ys), steps=steps, batch_size=batch_size,
                 probe_every=probe_every, probes={"metrics": _metrics(net, x, y, data, snapshots, per_kernel)},
                 seed=0, step_fn=_step_fn(net, base_step, xs, ys, batch_size, batches, unit.other_generator()),
                 progress=True, probe_size=batch_size, description=f"{opt_name} lr={lr:g} S={batch_size}")
    expected = list(range(0, steps + 1, probe_every)) + ([steps] if steps % probe_every else [])
    result: dict[str, Any] = {"step": np.array(expected), "seconds": hist["seconds"], "lr": lr}
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"):
        got = np.array([m[key] for m in hist["metrics"]], dtype=float)
        pad = np.full((len(expected) - len(got), R), np.nan)  # a run whose every member diverged stops early
        result[key] = np.concatenate([got, pad]) if len(pad) else got
    result["diverged"] = diverged(result["train_loss"])
    if batches is not None:
        result["batch"] = {key: np.array(v) for key, v in batches.items()}
    if kernel_every:
        result["kernel_step"] = np.array(expected[::per_kernel][:len(snapshots)])
        result["_snapshots"], result["_net"] = snapshots, net
    return result


def kernel_probes(run: dict, probe_x: torch.Tensor) -> dict:
    """NTK distance from init (trace NTK on ``probe_x``) and linear CKA of each block's features
    with their initial values, per member and snapshot; drops the snapshots from ``run``."""
    net: ReversibleNet = run.pop("_net")
    snapshots = run.pop("_snapshots")
    R = net.members
    ntk, cka = np.zeros((len(snapshots), R)), np.zeros((len(snapshots), R, net.depth))
    k0, f0 = [], []
    for t, snap in enumerate(snapshots):
        with torch.no_grad():
            for p, v in zip(net.parameters(), snap):
                p.copy_(v)
        for r in range(R):
            member = net.member(r)
            kernel = empirical_ntk(member, probe_x, mode="trace").detach()
            with torch.no_grad():
                feats = [h.detach() for h in member.block_inputs(probe_x)[1:]]
            if t == 0:
                k0.append(kernel)
                f0.append(feats)
            ntk[t, r] = ntk_distance(k0[r], kernel)
            cka[t, r] = [linear_cka(a, b) for a, b in zip(f0[r], feats)]
    run["ntk_distance"], run["cka"] = ntk, cka
    return run


@torch.no_grad()
def design_condition(config: Config, data: dict, seed: int, *, init_scale: float, expansion: int) -> float:
    """Median condition number of the halves' ``[φ, 1]`` on one mini-batch at initialization
    (how hard the exact per-block solves are); ``seed`` is a derived seed."""
    x = data["x"][:config.batch_size]
    net = make_net(config, x.shape[1], int(data["y"].max()) + 1, seed, init_scale=init_scale,
                   expansion=expansion).to(x.device)
    hs = net.block_inputs(x)
    conds = []
    for l, block in enumerate(net.blocks):
        for half, z in ((block.F, hs[l].chunk(2, -1)[1]), (block.G, hs[l + 1].chunk(2, -1)[0])):
            sv = torch.linalg.svdvals(half.design(z).double())
            conds.append(float(sv[0] / sv[-1]))
    return float(np.median(conds))


# --------------------------------------------------------------------------- selection rules
def diverged(train_loss: np.ndarray) -> np.ndarray:
    """Per unit (``train_loss``: probes × units): the training loss became non-finite or rose above
    ``DIVERGE_FACTOR`` × its initial value at some probe (fixed before the run)."""
    with np.errstate(invalid="ignore"):
        blown = ~np.isfinite(train_loss) | (train_loss > DIVERGE_FACTOR * train_loss[:1])
    return blown.any(0)


def steps_to_drop(train_loss: np.ndarray, steps: np.ndarray, factor: float = TARGET_FACTOR) -> np.ndarray:
    """Per unit, the first probed step where the training loss is ≤ initial / ``factor``;
    ``steps[-1] + 1`` (censored) if never within the run. ``train_loss``: probes × units."""
    hit = train_loss <= train_loss[0] / factor
    first = np.where(hit.any(0), steps[np.argmax(hit, axis=0)], steps[-1] + 1)
    return first.astype(float)


def speed_score(run: dict) -> float:
    """Selection objective of the speed claim: mean steps to the target over units (diverged: +inf)."""
    s = steps_to_drop(run["train_loss"], run["step"])
    return float(np.mean(np.where(run["diverged"], np.inf, s)))


def validation_score(run: dict) -> float:
    """Selection objective of the mini-batch claims: final validation loss, mean over units (diverged: +inf)."""
    last = run["val_loss"][-1]
    return float(np.mean(np.where(np.isfinite(last) & ~run["diverged"], last, np.inf)))


def select_lr(runs: dict, name: str, score: Callable[[dict], float]) -> float:
    """The grid rate of optimizer ``name`` with the lowest ``score`` (ties: the first in the grid)."""
    return min((lr for (n, lr) in runs if n == name), key=lambda lr: score(runs[(name, lr)]))


SCORES = {"full": speed_score, "mini": validation_score, "rich": validation_score}


def drop_private(run: dict) -> dict:
    return {k: v for k, v in run.items() if not k.startswith("_")}


# --------------------------------------------------------------------------- the chapter's run
def _group_kwargs(config: Config, group: str) -> dict:
    if group == "full":
        return dict(steps=config.full_steps, batch_size=config.full_batch_n, probe_every=1, full_batch=True)
    kw = dict(steps=config.mini_steps, batch_size=config.batch_size, probe_every=config.probe_every)
    if group == "rich":
        kw.update(init_scale=config.rich_init_scale, expansion=config.rich_expansion)
    return kw


def _select(config: Config, data: dict, unit: Units, grids: dict, device) -> tuple[dict, dict, dict]:
    """Every rate of both grids on the selection units, in every group; the chosen rates (each group by its
    claims' objective) and, for the record, what the first version's rule (validation loss) chose."""
    runs = {g: {} for g in GROUPS}
    for group in GROUPS:
        for name in TUNED:
            for lr in grids[name]:
                runs[group][(name, lr)] = train_ensemble(config, name, lr, data, unit, device=device,
                                                         **_group_kwargs(config, group))
    selected = {(g, n): select_lr(runs[g], n, SCORES[g]) for g in GROUPS for n in TUNED}
    old_rule = {n: select_lr(runs["full"], n, validation_score) for n in TUNED}
    return runs, selected, old_rule


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """Every training run of the chapter: the grids on the selection units, then the chosen rates
    (and SGD's fixed one) on the test units."""
    if config.kernel_every % config.probe_every:
        raise ValueError("kernel_every must be a multiple of probe_every")
    if len(config.gn_lrs) != len(config.adam_lrs):
        raise ValueError("GN and Adam get learning-rate grids of the same size")
    us = units(config, seed)
    data = load_data(config, device)
    probe_x = data["x"][:config.probe_n]
    grids = {"gn": config.gn_lrs, "adam": config.adam_lrs, "sgd": (config.sgd_lr,)}
    results: dict[str, Any] = {"config": config, "grids": grids, "n_test": len(data["y_test"]),
                               "unit_seeds": {role: {w: u.seeds(w) for w in ("init", "order")} for role, u in us.items()}}
    with _threads(device):
        results["selection"], selected, results["old_rule"] = _select(config, data, us["selection"], grids, device)
        for g in GROUPS:
            selected[(g, "sgd")] = config.sgd_lr
        results["selected"] = selected
        for group in GROUPS:
            results[group] = {}
            for name in OPTIMIZERS if group != "rich" else TUNED:
                kernels = config.kernel_every if group != "full" else None
                r = train_ensemble(config, name, selected[(group, name)], data, us["test"], device=device,
                                   kernel_every=kernels, track_batches=group == "mini", **_group_kwargs(config, group))
                results[group][name] = drop_private(kernel_probes(r, probe_x) if kernels else r)
        cond_seed = STREAMS.seed(seed, "condition", 0)
        results["design_condition"] = {
            "wide": design_condition(config, data, cond_seed, init_scale=config.init_scale, expansion=config.expansion),
            "control": design_condition(config, data, cond_seed, init_scale=config.rich_init_scale,
                                        expansion=config.rich_expansion)}
    return results


# --------------------------------------------------------------------------- exactness (float64)
def _explicit_jacobian(net: ReversibleNet, x: torch.Tensor) -> torch.Tensor:
    from torch.func import functional_call, jacrev

    names = [n for n, _ in net.named_parameters()]
    ps = tuple(p.detach() for p in net.parameters())
    jac = jacrev(lambda *q: functional_call(net, dict(zip(names, q)), (x,)).reshape(-1),
                 argnums=tuple(range(len(ps))))(*ps)
    return torch.cat([j.reshape(j.shape[0], -1) for j in jac], 1)


def _flat(direction) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for blk in direction for t in blk])


def _exactness(seed: int) -> dict:
    """Claim 1 and the checks on the tiny network (d=12, M=40, n=24, k=4), float64, explicit Jacobians;
    ``seed`` is the chapter seed (network and data from the ``exact`` stream, one index per depth)."""
    from curvnb.optim.exact_gauss_newton import function_space_step
    out: dict[str, float] = {}
    for i, (depth, k) in enumerate(((1, 12), (2, 4), (3, 4), (4, 4))):
        g = STREAMS.torch(seed, "exact", i)
        net = ReversibleNet(12, k, width=12, expansion=40, depth=depth, dtype=torch.float64, generator=g)
        x = torch.randn(24, 12, generator=g, dtype=torch.float64)
        y = torch.randint(0, k, (24,), generator=g)
        J = _explicit_jacobian(net, x)
        for hessian in ("identity", "pinv"):
            eps = function_space_step(net(x).detach(), y, "cross_entropy", 1.0, hessian)
            u = _flat(ExactGaussNewton(net).direction(x, eps))
            mp = torch.linalg.pinv(J) @ eps.reshape(-1)
            tag = f"L{depth}" + ("" if hessian == "identity" else "_hessian_pinv")
            out[f"{tag}_residual"] = float((J @ u - eps.reshape(-1)).norm() / eps.norm())
            if hessian == "identity":
                um = _flat(ExactGaussNewton(net, inverse="min_norm").direction(x, eps))
                out[f"{tag}_min_norm_vs_pinv"] = float((um - mp).norm() / mp.norm())
                out[f"{tag}_norm_ratio"] = float(u.norm() / mp.norm())  # blockwise / minimum norm
                if depth == 1:
                    out["L1_vs_pinv"] = float((u - mp).norm() / mp.norm())
        with torch.no_grad():
            h = net.features(x)
            out[f"L{depth}_inverse"] = float((net.inverse(h) - x).norm() / x.norm())
    return out


def run_exactness(config: Config, *, device: torch.device, seed: int) -> dict:
    with _threads(torch.device("cpu")):
        return _exactness(seed)
