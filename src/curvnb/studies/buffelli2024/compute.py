"""The computation of the buffelli2024 chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.buffelli2024.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from curvnb.config import single_thread
from curvnb.curvature import empirical_ntk, linear_cka, ntk_distance
from curvnb.models import ReversibleNet
from curvnb.optim import ExactGaussNewton
from curvnb.train import train


OPTIMIZERS = ("gn", "adam", "sgd")
TUNED = ("gn", "adam")          # the optimizers whose learning rate is selected on validation data
REGIMES = ("full", "mini")


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"           # "digits" | "mnist" | "cifar10"
    data_folder: str = "data"
    n_val: int = 300                  # validation examples held out of the training split (lr selection)
    seeds: int = 3                    # independent seeds per run (trained together as one ensemble)
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
    "full": Config(dataset="mnist", n_val=5000, seeds=5, width=784, expansion=1024, depth=4,
                   full_batch_n=1000, full_steps=100, batch_size=256, mini_steps=2000, probe_every=100,
                   kernel_every=500, probe_n=64, rich_expansion=256),
    # tiny: every code path in seconds (tests); its verdicts are no evidence
    "smoke": Config(full_batch_n=40, expansion=48, full_steps=3, mini_steps=4, probe_every=2, kernel_every=2, probe_n=8,
                    rich_expansion=16, batch_size=16),
}


# --------------------------------------------------------------------------- data and models
def load_data(config: Config, device: torch.device, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Train / validation / test tensors; the validation split is the last ``n_val`` training examples."""
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


def seed_list(config: Config, seed: int) -> list[int]:
    """The chapter's independent seeds: ``seed, seed + 1, …``."""
    if config.seeds < 3:
        raise ValueError(f"statistical claims need at least 3 seeds, got seeds={config.seeds}")
    return [seed + s for s in range(config.seeds)]


def make_ensemble(config: Config, in_dim: int, k: int, seeds: Sequence[int], device, *,
                  init_scale: float | None = None, expansion: int | None = None) -> ReversibleNet:
    """One network per seed, stacked (:meth:`ReversibleNet.stack`)."""
    nets = [ReversibleNet(in_dim, k, width=config.width, expansion=expansion or config.expansion,
                          depth=config.depth, init_scale=config.init_scale if init_scale is None else init_scale,
                          seed=s) for s in seeds]
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
def train_ensemble(config: Config, opt_name: str, lr: float, data: dict, seeds: Sequence[int], *,
                   steps: int, batch_size: int, probe_every: int, device: torch.device,
                   full_batch: bool = False, kernel_every: int | None = None, track_batches: bool = False,
                   init_scale: float | None = None, expansion: int | None = None) -> dict:
    """Train one network per seed (stacked) with ``opt_name`` at ``lr``; per-member histories.

    ``full_batch``: train on the first ``batch_size`` training examples, all of them every step.

    Returns arrays shaped (probes × seeds): ``train_loss``/``train_acc`` (whole training set of the
    run), ``val_loss``, ``test_loss``, ``test_acc``; with ``track_batches`` the loss of the step's
    own mini-batch and of another random training mini-batch before and after every step
    (steps × seeds); with ``kernel_every`` parameter snapshots for the NTK/CKA probes."""
    x, y = data["x"], data["y"]
    if full_batch:  # the first batch_size training examples, all of them at every step
        x, y = x[:batch_size], y[:batch_size]
    n, R = len(x), len(seeds)
    in_dim, k = x.shape[1], int(data["y"].max()) + 1
    net = make_ensemble(config, in_dim, k, seeds, device, init_scale=init_scale, expansion=expansion)
    model = SeedMajor(net)
    # Member r sees example perms[r, j] where the shared sampler draws j: each seed has its own batch order.
    perms = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(x.device)
    xs, ys = x[perms].transpose(0, 1), y[perms].T  # (n, R, in), (n, R)
    if opt_name == "gn":
        opt = ExactGaussNewton(net, lr=lr)
        base_step = lambda m, o, xb, yb: o.step(xb.transpose(0, 1), yb.T)  # noqa: E731
    elif opt_name in ("adam", "sgd"):
        opt = (torch.optim.Adam if opt_name == "adam" else torch.optim.SGD)(net.parameters(), lr=lr)
        base_step = None
    else:
        raise ValueError(f"unknown optimizer {opt_name!r}: allowed values are {', '.join(map(repr, OPTIMIZERS))}")

    batches: dict[str, list] = {"before": [], "after": [], "others_before": [], "others_after": []}
    other_gen = torch.Generator().manual_seed(seeds[0] + 7919)

    def step_fn(m, o, xb, yb):
        if track_batches:
            j = torch.randint(0, n, (batch_size,), generator=other_gen).to(x.device)
            xo, yo = xs[j].transpose(0, 1), ys[j].T
            xr, yr = xb.transpose(0, 1), yb.T
            batches["before"].append(member_eval(net, xr, yr)[0]); batches["others_before"].append(member_eval(net, xo, yo)[0])
        if base_step is not None:
            loss = base_step(m, o, xb, yb)
        else:
            o.zero_grad(set_to_none=True)
            loss_t = ensemble_loss(m(xb), yb)
            loss_t.backward()
            o.step()
            loss = loss_t.item() / R
        if track_batches:
            batches["after"].append(member_eval(net, xr, yr)[0]); batches["others_after"].append(member_eval(net, xo, yo)[0])
        if not math.isfinite(loss):  # one diverged member must not stop the others (train() stops on NaN)
            per = member_eval(net, xb.transpose(0, 1), yb.T)[0]
            loss = float(np.mean(per[np.isfinite(per)])) if np.isfinite(per).any() else loss
        return loss

    snapshots: list[list[torch.Tensor]] = []
    count = {"probe": 0}
    per_kernel = (kernel_every or 0) // probe_every

    def metrics(_m) -> dict[str, list[float]]:
        out = {}
        for split, (xx, yy) in (("train", (x, y)), ("val", (data["x_val"], data["y_val"])),
                                ("test", (data["x_test"], data["y_test"]))):
            loss, acc = member_eval(net, xx, yy)
            out[f"{split}_loss"], out[f"{split}_acc"] = loss.tolist(), acc.tolist()
        if per_kernel and count["probe"] % per_kernel == 0:
            snapshots.append([p.detach().clone() for p in net.parameters()])
        count["probe"] += 1
        return out

    hist = train(model, opt, ensemble_loss, (xs, ys), steps=steps, batch_size=batch_size,
                 probe_every=probe_every, probes={"metrics": metrics}, seed=seeds[0],
                 step_fn=step_fn, progress=True, probe_size=batch_size, description=f"{opt_name} lr={lr:g} S={batch_size}")
    expected = list(range(0, steps + 1, probe_every)) + ([steps] if steps % probe_every else [])
    result: dict[str, Any] = {"step": np.array(expected), "seconds": hist["seconds"], "diverged": hist["diverged"]}
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"):
        got = np.array([m[key] for m in hist["metrics"]], dtype=float)
        pad = np.full((len(expected) - len(got), R), np.nan)  # a diverged run stops early
        result[key] = np.concatenate([got, pad]) if len(pad) else got
    if track_batches:
        result["batch"] = {key: np.array(v) for key, v in batches.items()}
    if kernel_every:
        result["kernel_step"] = np.array(expected[::per_kernel][:len(snapshots)])
        result["_snapshots"] = snapshots
        result["_net"] = net
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
                k0.append(kernel); f0.append(feats)
            ntk[t, r] = ntk_distance(k0[r], kernel)
            cka[t, r] = [linear_cka(a, b) for a, b in zip(f0[r], feats)]
    run["ntk_distance"], run["cka"] = ntk, cka
    return run


@torch.no_grad()
def design_condition(config: Config, data: dict, seed: int, *, init_scale: float, expansion: int) -> float:
    """Median condition number of the halves' ``[φ, 1]`` on one mini-batch at initialization
    (how hard the exact per-block solves are)."""
    x = data["x"][:config.batch_size]
    net = ReversibleNet(x.shape[1], int(data["y"].max()) + 1, width=config.width, expansion=expansion,
                        depth=config.depth, init_scale=init_scale, seed=seed).to(x.device)
    hs = net.block_inputs(x)
    conds = []
    for l, block in enumerate(net.blocks):
        for half, z in ((block.F, hs[l].chunk(2, -1)[1]), (block.G, hs[l + 1].chunk(2, -1)[0])):
            sv = torch.linalg.svdvals(half.design(z).double())
            conds.append(float(sv[0] / sv[-1]))
    return float(np.median(conds))


def drop_private(run: dict) -> dict:
    return {k: v for k, v in run.items() if not k.startswith("_")}


def select_lr(runs: dict, name: str) -> float:
    """The pre-registered rule: lowest validation loss at the end of training, mean over seeds
    (a diverged member counts as +inf)."""
    def score(lr: float) -> float:
        last = runs[(name, lr)]["val_loss"][-1]
        return float(np.mean(np.where(np.isfinite(last), last, np.inf)))
    return min((lr for (n, lr) in runs if n == name), key=score)


# --------------------------------------------------------------------------- the chapter's run
def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """Every training run of the chapter, over ``config.seeds`` seeds at once."""
    if config.kernel_every % config.probe_every:
        raise ValueError("kernel_every must be a multiple of probe_every")
    seeds = seed_list(config, seed)
    data = load_data(config, device)
    probe_x = data["x"][:config.probe_n]
    grids = {"gn": config.gn_lrs, "adam": config.adam_lrs, "sgd": (config.sgd_lr,)}
    if len(config.gn_lrs) != len(config.adam_lrs):
        raise ValueError("GN and Adam get learning-rate grids of the same size")
    results: dict[str, Any] = {"config": config, "seeds": seeds, "grids": grids, "selected": {},
                               "n_test": len(data["y_test"]), "full": {}, "mini": {}, "rich": {}}
    with _threads(device):
        for name in OPTIMIZERS:
            for lr in grids[name]:
                results["full"][(name, lr)] = train_ensemble(
                    config, name, lr, data, seeds, steps=config.full_steps, batch_size=config.full_batch_n,
                    probe_every=1, full_batch=True, device=device)
                results["mini"][(name, lr)] = train_ensemble(
                    config, name, lr, data, seeds, steps=config.mini_steps, batch_size=config.batch_size,
                    probe_every=config.probe_every, kernel_every=config.kernel_every, track_batches=True,
                    device=device)
        for regime in REGIMES:
            for name in TUNED:
                results["selected"][(regime, name)] = select_lr(results[regime], name)
        results["selected"][("mini", "sgd")] = results["selected"][("full", "sgd")] = config.sgd_lr
        # NTK / CKA only for the runs the chapter shows (selected learning rates); others dropped.
        for key, r in list(results["mini"].items()):
            name, lr = key
            results["mini"][key] = drop_private(
                kernel_probes(r, probe_x) if lr == results["selected"][("mini", name)] else r)
        # Lazy vs rich control: smaller init and narrower expansion (features must move to fit),
        # its learning rates chosen by the same validation rule.
        for name in TUNED:
            for lr in grids[name]:
                results["rich"][(name, lr)] = train_ensemble(
                    config, name, lr, data, seeds, steps=config.mini_steps, batch_size=config.batch_size,
                    probe_every=config.probe_every, kernel_every=config.kernel_every, device=device,
                    init_scale=config.rich_init_scale, expansion=config.rich_expansion)
            results["selected"][("rich", name)] = select_lr(results["rich"], name)
        results["design_condition"] = {
            "wide": design_condition(config, data, seed, init_scale=config.init_scale, expansion=config.expansion),
            "control": design_condition(config, data, seed, init_scale=config.rich_init_scale,
                                        expansion=config.rich_expansion)}
        for key, r in list(results["rich"].items()):
            results["rich"][key] = drop_private(
                kernel_probes(r, probe_x) if key[1] == results["selected"][("rich", key[0])] else r)
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
    """Claim 1 and the checks on the tiny network (d=12, M=40, n=24, k=4), float64, explicit Jacobians."""
    from curvnb.optim.exact_gauss_newton import function_space_step
    out: dict[str, float] = {}
    for depth, k in ((1, 12), (2, 4), (3, 4), (4, 4)):
        net = ReversibleNet(12, k, width=12, expansion=40, depth=depth, seed=seed, dtype=torch.float64)
        g = torch.Generator().manual_seed(seed + 1)
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
