"""Bias-free deep MLPs with explicit initialisation, and the neural chain (width 1).

``deep_mlp(depth, width, d_in, d_out, activation=..., init=..., residual=..., batchnorm=...)``
builds ``depth`` linear maps ``W_1 (d_in→width), W_2..W_{L-1} (width→width), W_L (width→d_out)``.
Every weight is drawn from an explicit ``torch.Generator``: ``nn.Linear``'s default init is
neither Xavier nor He, and reproducing the vanishing-gradient theory needs the exact variances.

- ``init="xavier"``: N(0, 2/(fan_in+fan_out)) (= 1/d for square layers);
  ``"he"``: N(0, 2/fan_in); ``"lecun"``: N(0, 1/fan_in);
  ``"orthogonal"``: a (semi-)orthogonal matrix times ``gain`` (1 linear, √2 ReLU);
  ``"normal"``: N(0, 1) (the neural chain's scheme).
- ``residual=True``: hidden layers become ``h ← h + φ(W h)/√L`` (the 1/√L branch scaling keeps
  the forward variance bounded at any depth).
- ``batchnorm=True``: BatchNorm1d (no affine parameters, so the net stays bias-free) after each
  hidden linear map, before the activation.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from curvnb.seeds import cpu_generator

ACTIVATIONS = ("relu", "tanh", "linear")
INITS = ("xavier", "he", "lecun", "orthogonal", "normal")


def init_weight_(weight: torch.Tensor, init: str, activation: str = "relu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill a (fan_out, fan_in) weight in place with scheme ``init`` drawn from ``generator``."""
    fan_out, fan_in = weight.shape
    with torch.no_grad():
        if init == "orthogonal":
            n, m = max(fan_out, fan_in), min(fan_out, fan_in)
            a = torch.randn(n, m, generator=generator, dtype=torch.float64)
            q, r = torch.linalg.qr(a)
            q = q * torch.sign(torch.diagonal(r))  # Haar-distributed (sign fix of QR)
            q = q if fan_out >= fan_in else q.T
            gain = math.sqrt(2.0) if activation == "relu" else 1.0
            weight.copy_((gain * q).to(weight.dtype))
            return weight
        variances = {"xavier": 2.0 / (fan_in + fan_out), "he": 2.0 / fan_in, "lecun": 1.0 / fan_in, "normal": 1.0}
        if init not in variances:
            raise ValueError(f"unknown init {init!r}: allowed values are {', '.join(map(repr, INITS))}")
        draw = torch.randn(weight.shape, generator=generator, dtype=torch.float64)
        weight.copy_((math.sqrt(variances[init]) * draw).to(weight.dtype))
    return weight


class DeepMLP(nn.Module):
    """A bias-free MLP; see :func:`deep_mlp`. ``layers[l]`` holds ``W_{l+1}``."""

    def __init__(self, depth: int, width: int, d_in: int, d_out: int, activation: str = "relu",
                 residual: bool = False, batchnorm: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: allowed values are {', '.join(map(repr, ACTIVATIONS))}")
        if depth < 1 or width < 1 or d_in < 1 or d_out < 1:
            raise ValueError(f"depth, width, d_in and d_out must be ≥ 1, got {depth}, {width}, {d_in}, {d_out}")
        if residual and depth < 3:
            raise ValueError(f"a residual MLP needs depth ≥ 3 (input map, ≥1 block, output map), got {depth}")
        self.depth, self.width, self.activation = depth, width, activation
        self.residual, self.batchnorm = residual, batchnorm
        dims = [d_in] + [width] * (depth - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        # BatchNorm after every hidden linear map (not the output map).
        self.norms = nn.ModuleList(nn.BatchNorm1d(width, affine=False) for _ in range(depth - 1)) if batchnorm else None
        self.branch_scale = 1.0 / math.sqrt(depth) if residual else 1.0

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return torch.relu(z)
        return torch.tanh(z) if self.activation == "tanh" else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for l, layer in enumerate(self.layers[:-1]):
            z = layer(h)
            if self.norms is not None:
                z = self.norms[l](z)
            if self.residual and l > 0:  # the input map changes dimension: no skip there
                h = h + self.branch_scale * self._phi(z)
            else:
                h = self._phi(z)
        return self.layers[-1](h)


def deep_mlp(depth: int, width: int, d_in: int, d_out: int, *, activation: str = "relu", init: str = "he",
             residual: bool = False, batchnorm: bool = False, seed: int | None = 0,
             generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
             device: torch.device | str = "cpu") -> DeepMLP:
    """A bias-free deep MLP with ``depth`` weight matrices initialised by ``init`` (see module doc).

    Weights come from ``generator`` if given, else from a fresh generator seeded with ``seed``,
    so the same arguments always give the same network."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: allowed values are {', '.join(map(repr, INITS))}")
    model = DeepMLP(depth, width, d_in, d_out, activation=activation, residual=residual, batchnorm=batchnorm).to(dtype)
    g = generator if generator is not None else cpu_generator(int(seed or 0))
    for layer in model.layers:
        init_weight_(layer.weight, init, activation, g)
    return model.to(device=device, dtype=dtype)


def neural_chain(depth: int, *, init: str = "normal", w0: float = 0.5, seed: int | None = 0,
                 dtype: torch.dtype = torch.float64) -> DeepMLP:
    """The width-1 linear network ``f(x) = w_L ⋯ w_1 x``: ``init="normal"`` draws w_l ~ N(0, 1),
    ``init="balanced"`` sets every w_l = ``w0``."""
    if init == "balanced":
        model = DeepMLP(depth, 1, 1, 1, activation="linear")
        with torch.no_grad():
            for layer in model.layers:
                layer.weight.fill_(float(w0))
        return model.to(dtype=dtype)
    if init != "normal":
        raise ValueError(f"unknown chain init {init!r}: allowed values are 'normal', 'balanced'")
    return deep_mlp(depth, 1, 1, 1, activation="linear", init="normal", seed=seed, dtype=dtype)
