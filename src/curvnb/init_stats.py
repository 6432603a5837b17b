"""Statistics of randomly initialised deep networks, and escape times from flat plateaus.

- :func:`chain_log_products`: ln|w_L⋯w_1| of the neural chain over many samples (batched).
- :class:`SeedBatchedMLP` / :func:`seed_batched_mlp`: S independent copies of
  :func:`curvnb.models.deep_mlp` (copy ``i`` has exactly the weights of ``deep_mlp(..., seed=seeds[i])``)
  evaluated as one network with batched matrix products, so many seeds cost about one.
- :func:`layer_grad_norms`: per-layer squared gradient norms ‖∇_{W_l} ℓ‖² at init over seeds
  (every seed its own weights and, without ``data``, its own regression batch; exact).
- :func:`log_ratio_per_layer`: the exact E ln of the per-layer squared-norm ratio
  (linear/Xavier: χ²_d/d; ReLU/He: (2/d)·χ²_K with K ~ Bin(d, ½), K ≥ 1), the slope of the theory.
- :func:`hessian_top_at_init`, :func:`hessian_spectrum_at_init`: through :mod:`curvnb.curvature`.
- :func:`chain_descent`: GD or Adam on many chains at once (both act per coordinate, so a
  (seeds, L) tensor with a summed loss gives every seed its exact own trajectory).
- :func:`train_seeds`: mini-batch SGD/Adam of S seeds at once through :func:`curvnb.train.train`,
  each seed with its own initialisation and its own batch order.
- :func:`median_interval`: a distribution-free 95 % interval of a median (order statistics).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.special import digamma
from scipy.stats import binom
from torch import nn
from torch.nn import functional as F

from curvnb.curvature import dense_hessian, hessian_eigenvalues
from curvnb.models.mlp import ACTIVATIONS, INITS, deep_mlp, init_weight_
from curvnb.seeds import cpu_generator

EULER_GAMMA = 0.5772156649015329
#: E ln|w| for w ~ N(0, 1): −(γ + ln 2)/2 ≈ −0.635.
CHAIN_LOG_MEAN = -(EULER_GAMMA + math.log(2.0)) / 2
#: nn.BatchNorm1d's default ε.
BN_EPS = 1e-5


def chain_log_products(depths: Sequence[int], num_samples: int, seed: int = 0,
                       chunk: int = 100_000) -> dict[int, np.ndarray]:
    """``{L: ln|w_L⋯w_1|}`` for w_l ~ N(0, 1), ``num_samples`` chains; depth L uses the first L factors."""
    g = cpu_generator(seed)
    depths = sorted(set(int(d) for d in depths))
    out = {d: np.empty(num_samples) for d in depths}
    for start in range(0, num_samples, chunk):
        n = min(chunk, num_samples - start)
        acc = torch.zeros(n, dtype=torch.float64)
        for layer in range(1, depths[-1] + 1):
            # Summing logs: the product itself underflows float64 beyond L ≈ 1000.
            acc += torch.randn(n, generator=g, dtype=torch.float64).abs().log()
            if layer in out:
                out[layer][start:start + n] = acc.numpy()
    return out


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median of i.i.d. ``values`` from order statistics.

    With n samples the number below the true median is Bin(n, ½); the interval is
    [x_(j), x_(k)] with j, k the binomial quantiles, coverage ≥ ``level``. Cheap for any n
    (the bootstrap would resample n values thousands of times)."""
    x = np.sort(np.asarray(values, dtype=float).ravel())
    n = x.size
    if n < 1:
        raise ValueError("need at least one value")
    alpha = 1.0 - level
    j = int(binom.ppf(alpha / 2, n, 0.5))          # P(B ≤ j − 1) < α/2: x_(j) (1-based) lies below the median
    k = int(binom.ppf(1 - alpha / 2, n, 0.5)) + 1  # x_(k) lies above it
    return float(x[max(j, 1) - 1]), float(x[min(k, n) - 1])


def log_ratio_per_layer(width: int, activation: str) -> float:
    """Exact E ln(‖h_l‖²/‖h_{l−1}‖²) for one layer at the critical init (Xavier linear / He ReLU).

    Linear: ψ(d/2) − ln(d/2). ReLU: E[ψ(K/2) + ln 2 | K ≥ 1] + ln(2/d), K ~ Bin(d, ½)
    (K = 0 kills the signal; conditioning on survival gives the slope of the median of survivors)."""
    d = int(width)
    if activation == "linear":
        return float(digamma(d / 2) - math.log(d / 2))
    if activation == "relu":
        k = np.arange(1, d + 1)
        p = binom.pmf(k, d, 0.5)
        return float(np.sum(p * (digamma(k / 2) + math.log(2.0))) / p.sum() + math.log(2.0 / d))
    raise ValueError(f"unknown activation {activation!r}: allowed values are 'relu', 'linear'")


# --------------------------------------------------------------------------- many seeds as one network
def _phi(z: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return torch.relu(z)
    return torch.tanh(z) if activation == "tanh" else z


def hidden_states(weights: Sequence[torch.Tensor], x: torch.Tensor, *, activation: str = "relu",
                  residual: bool = False, batchnorm: bool = False, branch_scale: float | None = None):
    """Yield h_0 = x (as (n, d) or (S, n, d)) and the output h_l (S, n, width) of each hidden layer of the
    seed-batched MLP with ``weights`` [W_1, …] (each (S, fan_out, fan_in); the last one, the output map,
    is not applied). ``branch_scale`` defaults to 1/√len(weights) for residual nets."""
    if branch_scale is None:
        branch_scale = 1.0 / math.sqrt(len(weights)) if residual else 1.0
    h = x if x.dim() == 2 else x.transpose(0, 1)  # (n, d) shared, or (S, n, d)
    yield h
    for l, w in enumerate(weights[:-1]):
        z = h @ w.transpose(1, 2)  # (S, n, width); a shared (n, d) input broadcasts over seeds
        if batchnorm:  # per seed and unit over the n examples: one fused batch_norm over (n, S·width)
            S, n, width = z.shape
            z = F.batch_norm(z.transpose(0, 1).reshape(n, S * width), None, None, training=True, eps=BN_EPS)
            z = z.reshape(n, S, width).transpose(0, 1)
        h = h + branch_scale * _phi(z, activation) if (residual and l > 0) else _phi(z, activation)
        yield h


def readout(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The output map W_L (S, d_out, width) applied to hidden states h (S, n, width): (n, S, d_out)."""
    return (h @ w.transpose(1, 2)).transpose(0, 1)


class SeedBatchedMLP(nn.Module):
    """S independent bias-free MLPs (the architecture of :class:`curvnb.models.mlp.DeepMLP`) as one module.

    ``weights[l]`` has shape (S, fan_out, fan_in): slice ``i`` is seed ``i``'s W_{l+1}. ``forward``
    takes ``x`` of shape (n, d_in) (the same examples for every seed) or (n, S, d_in) (each seed
    its own) and returns (n, S, d_out). A loss that sums the seeds' losses gives every seed exactly
    its own gradient, and SGD and Adam act per coordinate, so training the module trains S
    independent networks. BatchNorm (no affine part, ε = 1e-5, as DeepMLP's) always normalises with
    the statistics of the batch it is given, per seed, in ``train()`` and ``eval()`` mode alike:
    losses are measured with the evaluated set's own statistics."""

    def __init__(self, weights: Sequence[torch.Tensor], activation: str = "relu", residual: bool = False,
                 batchnorm: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: allowed values are {', '.join(map(repr, ACTIVATIONS))}")
        depth = len(weights)
        if residual and depth < 3:
            raise ValueError(f"a residual MLP needs depth ≥ 3 (input map, ≥1 block, output map), got {depth}")
        self.weights = nn.ParameterList(nn.Parameter(w.detach()) for w in weights)
        self.depth, self.num_seeds = depth, weights[0].shape[0]
        self.activation, self.residual, self.batchnorm = activation, residual, batchnorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ws = list(self.weights)
        h = x
        for h in hidden_states(ws, x, activation=self.activation, residual=self.residual, batchnorm=self.batchnorm):
            pass
        return readout(h, ws[-1])


def _draw_weights(depths: Sequence[int], width: int, d_in: int, d_out: int, seeds: Sequence[int], init: str,
                  activation: str, dtype: torch.dtype) -> dict[int, list[torch.Tensor]]:
    """``{L: [W_1, …, W_L]}``, each (S, fan_out, fan_in): the weights of ``deep_mlp(L, …, seed=s)`` for every
    depth in ``depths``, drawn once. deep_mlp draws W_1, W_2, … in order from one generator, so nets of
    different depths share W_1…W_{L−1} (the same tensors here); each depth's output map is drawn from
    the generator state after its last hidden layer."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: allowed values are {', '.join(map(repr, INITS))}")
    depths = sorted({int(L) for L in depths})
    deepest, S = depths[-1], len(seeds)
    hidden = [torch.empty(S, width, d_in if l == 0 else width, dtype=dtype) for l in range(deepest - 1)]
    last = {L: torch.empty(S, d_out, d_in if L == 1 else width, dtype=dtype) for L in depths}
    for i, s in enumerate(seeds):
        g = cpu_generator(s)
        for l in range(1, deepest + 1):
            if l in last:  # depth l: its output map comes right after its l − 1 hidden layers
                state = g.get_state()
                init_weight_(last[l][i], init, activation, g)
                g.set_state(state)
            if l < deepest:
                init_weight_(hidden[l - 1][i], init, activation, g)
    return {L: hidden[:L - 1] + [last[L]] for L in depths}


def seed_batched_mlp(depth: int, width: int, d_in: int, d_out: int, seeds: Sequence[int], *,
                     activation: str = "relu", init: str = "he", residual: bool = False, batchnorm: bool = False,
                     dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> SeedBatchedMLP:
    """``deep_mlp(depth, width, d_in, d_out, seed=s, ...)`` for every ``s`` in ``seeds``, as one module.

    Each seed's weights are drawn exactly as :func:`~curvnb.models.deep_mlp` draws them (same
    generator, same order, same scheme), without building S modules."""
    weights = _draw_weights([depth], width, d_in, d_out, seeds, init, activation, dtype)[depth]
    return SeedBatchedMLP([w.to(device) for w in weights], activation=activation, residual=residual,
                          batchnorm=batchnorm)


def seed_losses(outputs: torch.Tensor, targets: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-seed mean loss, shape (S,), of ``outputs`` (n, S, d_out) against ``targets``.

    ``targets``: class labels (n,) or (n, S) for ``"ce"``; values (n, d_out) or (n, S, d_out) for
    ``"mse"`` (the mean over examples and outputs, as ``nn.MSELoss``)."""
    n, s, c = outputs.shape
    if loss == "ce":
        y = targets if targets.dim() == 2 else targets[:, None].expand(n, s)
        return F.cross_entropy(outputs.reshape(n * s, c), y.reshape(n * s), reduction="none").view(n, s).mean(0)
    if loss == "mse":
        y = targets if targets.dim() == 3 else targets[:, None, :]
        return (outputs - y).pow(2).mean(dim=(0, 2))
    raise ValueError(f"unknown loss {loss!r}: allowed values are 'mse', 'ce'")


def _regression_data(seed: int, n: int, d_in: int, d_out: int, dtype: torch.dtype):
    g = cpu_generator(10_000 + int(seed))
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(n, d_out, generator=g, dtype=torch.float64).to(dtype)
    return x, y


def grad_norms_over_depths(depths: Sequence[int], width: int, seeds: Sequence[int], *, activation: str = "relu",
                           init: str = "he", d_in: int = 16, n: int = 64, d_out: int = 1, residual: bool = False,
                           batchnorm: bool = False, data: tuple[torch.Tensor, torch.Tensor] | None = None,
                           loss: str = "mse", dtype: torch.dtype = torch.float64, max_elements: int = 2 ** 23,
                           first_only: bool = False) -> dict[int, np.ndarray]:
    """``{L: squared gradient norms ‖∇_{W_l} ℓ‖² at init}`` for every depth L, each of shape (seeds, L)
    (``first_only``: (seeds, 1), W_1 only, which skips the other weight gradients).

    Seed ``s`` has the weights of ``deep_mlp(L, ..., seed=s)``; without ``data`` it also draws its own
    regression batch x ~ N(0, I_{d_in}), y ~ N(0, I_{d_out}) (n examples) and uses the MSE loss.
    With ``data`` every seed uses that batch (``loss="ce"`` for class labels); BatchNorm uses the
    batch's statistics. All seeds run as one :class:`SeedBatchedMLP` (in chunks of at most
    ``max_elements`` hidden activations). Without residual branches, nets of every depth share
    their first layers (:func:`_draw_weights`), so one forward pass serves all depths and each
    depth has its own backward pass from its own output map."""
    if loss not in ("mse", "ce"):
        raise ValueError(f"unknown loss {loss!r}: allowed values are 'mse', 'ce'")
    depths = sorted({int(L) for L in depths})
    seeds = [int(s) for s in seeds]
    if data is not None:
        d_in, n = data[0].shape[1], data[0].shape[0]
        d_out = int(data[1].max()) + 1 if loss == "ce" else data[1].shape[1]
    chunk = max(1, max_elements // max(1, n * width * depths[-1]))
    out: dict[int, list[np.ndarray]] = {L: [] for L in depths}
    for start in range(0, len(seeds), chunk):
        block = seeds[start:start + chunk]
        weights = {L: [w.requires_grad_() for w in ws]
                   for L, ws in _draw_weights(depths, width, d_in, d_out, block, init, activation, dtype).items()}
        if data is not None:
            x, y = data[0].to(dtype), (data[1] if loss == "ce" else data[1].to(dtype))
        else:
            batches = [_regression_data(s, n, d_in, d_out, dtype) for s in block]
            x = torch.stack([b[0] for b in batches], dim=1)  # (n, S, d_in)
            y = torch.stack([b[1] for b in batches], dim=1)
        kw = {"activation": activation, "residual": residual, "batchnorm": batchnorm}
        # The residual branch scale 1/√L depends on the depth: only plain nets share the forward pass.
        shared = not residual
        states = list(hidden_states(weights[depths[-1]], x, **kw)) if shared else None
        for L in depths:
            ws = weights[L]
            if shared:
                output = readout(states[L - 1], ws[-1])
            else:
                *_, h = hidden_states(ws, x, **kw)
                output = readout(h, ws[-1])
            wanted = ws[:1] if first_only else ws
            # The sum of the seeds' losses: every seed gets exactly its own gradient.
            grads = torch.autograd.grad(seed_losses(output, y, loss).sum(), wanted, retain_graph=shared)
            out[L].append(torch.stack([g.pow(2).sum(dim=(1, 2)) for g in grads], dim=1).numpy())
    return {L: np.concatenate(v, axis=0) for L, v in out.items()}


def layer_grad_norms(depth: int, width: int, seeds: Sequence[int], **kwargs) -> np.ndarray:
    """Squared gradient norms ‖∇_{W_l} ℓ‖² at init, shape (seeds, depth); keyword arguments as
    :func:`grad_norms_over_depths` (``first_only=True``: shape (seeds, 1))."""
    return grad_norms_over_depths([depth], width, seeds, **kwargs)[int(depth)]


# --------------------------------------------------------------------------- Hessian at init
def hessian_top_at_init(depth: int, width: int, seeds: Sequence[int], *, activation: str = "linear",
                        init: str = "xavier", d_in: int = 16, n: int = 64, d_out: int = 1,
                        tol: float = 1e-3, max_iter: int | None = None) -> np.ndarray:
    """max|λ| of the MSE-loss Hessian at init (Lanczos via ``curvnb.curvature``), one per seed.

    ``max_iter`` caps the Lanczos steps (a cheap estimate, at most the true value, for interactive views)."""
    out = np.empty(len(seeds))
    for i, s in enumerate(seeds):
        model = deep_mlp(depth, width, d_in, d_out, activation=activation, init=init, generator=cpu_generator(s),
                         dtype=torch.float64)
        batch = _regression_data(int(s), n, d_in, d_out, torch.float64)
        res = hessian_eigenvalues(model, nn.MSELoss(), batch, k=1, which="LM", tol=tol, seed=int(s), max_iter=max_iter)
        out[i] = float(res.eigenvalues.abs().max())
    return out


def hessian_spectrum_at_init(depth: int, width: int, seed: int, *, activation: str = "linear",
                             init: str = "xavier", d_in: int = 4, n: int = 32, d_out: int = 1) -> np.ndarray:
    """All Hessian eigenvalues (ascending) of a tiny net at init (dense, float64, via ``curvnb.curvature``)."""
    model = deep_mlp(depth, width, d_in, d_out, activation=activation, init=init, generator=cpu_generator(seed),
                     dtype=torch.float64)
    h = dense_hessian(model, nn.MSELoss(), _regression_data(int(seed), n, d_in, d_out, torch.float64))
    return torch.linalg.eigvalsh(0.5 * (h + h.T)).numpy()


# --------------------------------------------------------------------------- chains
def chain_descent(weights: torch.Tensor, *, lr: float | Sequence[float], steps: int, optimizer: str = "gd",
                  scale: float | Sequence[float] = 1.0, threshold: float = 0.25,
                  betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, record: bool = False) -> dict:
    """GD or Adam on the chain loss ``scale · ½(w_L⋯w_1 − 1)²`` for every row of ``weights`` (seeds, L).

    ``lr`` and ``scale`` are one number or one per row (so a grid of settings runs as one batch).
    Returns ``hit`` (seeds,): the first step k at which the *unscaled* loss ½(∏w − 1)² is below
    ``threshold`` (``inf`` if never within ``steps``), and with ``record=True`` ``loss`` (steps+1, seeds).
    Adam is PyTorch's update (bias-corrected moments, ``eps`` added to √v̂), written per coordinate."""
    if optimizer not in ("gd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}: allowed values are 'gd', 'adam'")
    w = weights.detach().clone().to(torch.float64)
    rows = w.shape[0]

    def per_row(value, name: str) -> torch.Tensor:
        t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if t.numel() not in (1, rows):
            raise ValueError(f"{name} must be one number or one per row ({rows}), got {t.numel()}")
        return t.expand(rows).reshape(rows, 1)

    lr_t, scale_t = per_row(lr, "lr"), per_row(scale, "scale")[:, 0]
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    hit = np.full(rows, np.inf)
    history = []
    b1, b2 = betas
    for k in range(steps + 1):
        w.requires_grad_(True)
        p = w.prod(dim=1)
        raw = 0.5 * (p - 1) ** 2
        (g,) = torch.autograd.grad((scale_t * raw).sum(), w)  # rows are independent: per-seed gradients
        raw = raw.detach().numpy()
        newly = (raw < threshold) & np.isinf(hit)
        hit[newly] = k
        if record:
            history.append(raw.copy())
        elif np.isfinite(hit).all() or not np.isfinite(raw).any():
            break
        if k == steps:
            break
        with torch.no_grad():
            if optimizer == "gd":
                w = w - lr_t * g
            else:
                t = k + 1
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                denom = (v / (1 - b2 ** t)).sqrt() + eps
                w = w - lr_t * (m / (1 - b1 ** t)) / denom
    out = {"hit": hit}
    if record:
        out["loss"] = np.array(history)
    return out


def balanced_escape_theory(depth: int, w0: float, lr: float) -> float:
    """GD steps for the balanced chain to leave the plateau: w0^{−(L−2)}/((L−2)η) (gradient-flow blow-up time)."""
    return w0 ** (-(depth - 2)) / ((depth - 2) * lr)


# --------------------------------------------------------------------------- training many seeds at once
def seed_batch_orders(n: int, seeds: Sequence[int]) -> torch.Tensor:
    """(n, S) index table: column ``i`` is a fixed random permutation of the n examples drawn from
    ``seeds[i]``. Training on ``x[table]`` with one shared per-epoch reshuffle gives every seed an
    independent uniformly random batch order (a uniform permutation composed with a fixed one is uniform)."""
    return torch.stack([torch.randperm(n, generator=cpu_generator(20_000 + int(s)))
                        for s in seeds], dim=1)


def train_seeds(model: SeedBatchedMLP, x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int], *, optimizer: str,
                lr: float | Sequence[float], steps: int, batch_size: int, seed: int = 0,
                record_every: int = 20) -> dict:
    """Mini-batch training of every seed (slot) of ``model`` with cross-entropy (SGD without momentum, or Adam).

    The loop is :func:`curvnb.train.train`; the loss is the sum of the slots' mean losses, so each
    slot follows its own trajectory, on the batch order of its seed (:func:`seed_batch_orders`).
    ``lr`` may give one learning rate per slot for SGD: slot i's loss is weighted by lr_i / max(lr)
    and SGD runs at max(lr), i.e. slot i takes plain SGD steps of size lr_i (equal to separate runs
    up to floating-point rounding). Adam is invariant to loss weights, so it takes one ``lr``.
    Returns ``{"step": [...], "loss": (records, S) array}``: each seed's cross-entropy on the whole
    training set (``inf`` once a seed has diverged; a diverged seed does not stop the others)."""
    from curvnb.train import train

    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}: allowed values are 'sgd', 'adam'")
    if len(seeds) != model.num_seeds:
        raise ValueError(f"{len(seeds)} seeds for a model of {model.num_seeds}")
    lrs = [float(lr)] * len(seeds) if isinstance(lr, (int, float)) else [float(v) for v in lr]
    if len(lrs) != len(seeds):
        raise ValueError(f"{len(lrs)} learning rates for {len(seeds)} slots")
    if optimizer == "adam" and len(set(lrs)) > 1:
        raise ValueError("Adam is invariant to loss weights: one learning rate per call")
    base_lr = max(lrs)
    weights = torch.tensor([v / base_lr for v in lrs], dtype=torch.float64, device=x.device)
    order = seed_batch_orders(len(x), seeds).to(x.device)
    xs, ys = x[order], y[order]  # (n, S, d_in), (n, S): seed i sees example order[:, i]

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_seed = seed_losses(out, target, "ce")
        # A diverged slot contributes nothing (its own parameters are lost anyway): the others go on.
        return (weights.to(per_seed.dtype) * torch.where(torch.isfinite(per_seed), per_seed,
                                                         torch.zeros_like(per_seed))).sum()

    def full_loss(m: nn.Module) -> list[float]:
        values = seed_losses(m(x), y, "ce")
        return [float(v) if math.isfinite(v) else math.inf for v in values.tolist()]

    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=base_lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=base_lr)
    history = train(model, opt, loss_fn, (xs, ys), steps=steps, batch_size=batch_size, probe_every=record_every,
                    probes={"seed_loss": full_loss}, seed=seed, progress=False,
                    probe_data=(xs[:batch_size], ys[:batch_size]), description=f"{optimizer} ({len(seeds)} slots)")
    loss = np.array(history["seed_loss"], dtype=float)
    loss[~np.isfinite(loss)] = np.inf
    # once non-finite, a seed stays diverged (its parameters are NaN): keep it at inf
    loss = np.where(np.cumsum(~np.isfinite(loss), axis=0) > 0, np.inf, loss)
    return {"step": np.array(history["step"]), "loss": loss}
