"""Reversible (additive coupling) network with half-functions linear in their weights.

Our reading of Buffelli et al. (2024). One block on features ``x = (x₁, x₂)`` (each ``d/2``)::

    y₁ = x₁ + F(x₂),   y₂ = x₂ + G(y₁),   F(z) = φ(z C_F) W_Fᵀ + b_F  (same for G)

with a fixed random expansion ``C`` (``d/2 × M``, an inverted bottleneck), trainable ``W``
(``d/2 × M``) and ``b``; ``φ`` is ReLU. (The authors' code uses an identity ``φ`` in the first
block; that makes the block's ``[φ(x₂C), 1]`` rank ``≤ d/2 + 1``, so with more examples than that
its GN solve is least-squares, not exact; it is available as ``linear_first=True``.) Exact inverse:
``x₂ = y₂ − G(y₁)``, ``x₁ = y₁ − F(x₂)``. Inputs enter through a fixed matrix ``P``
(``in_dim × d``, orthonormal rows when ``in_dim ≤ d``, so ``x = h₀ Pᵀ``) and logits leave through
a fixed readout ``U`` (``d × k``, orthonormal columns). Only the ``W``'s and ``b``'s train.

**Ensembles.** :meth:`ReversibleNet.stack` turns ``R`` networks of the same shape (e.g. different
seeds) into one whose weights and fixed matrices carry a leading member dimension; it takes
inputs ``(R, n, in_dim)`` (or ``(n, in_dim)``, shared) and returns ``(R, n, k)``. Every member
computes exactly what it computed alone, so ``R`` small runs train as one batched run (Adam and
SGD are elementwise, so ``torch.optim`` on the stacked weights is ``R`` independent optimizers);
:meth:`ReversibleNet.member` gives one member back as a plain network.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

from curvnb.seeds import cpu_generator

__all__ = ["CouplingHalf", "CouplingBlock", "ReversibleNet"]


def _orthonormal(rows: int, cols: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A ``rows × cols`` matrix with orthonormal columns (rows ≥ cols) or rows (rows < cols)."""
    a = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=dtype)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # a unique (Haar) orthonormal basis
    return q if rows >= cols else q.T


class CouplingHalf(nn.Module):
    """``z ↦ φ(z C) Wᵀ + b`` with fixed ``C`` and trainable ``W``, ``b`` (linear in them).

    All methods accept leading (ensemble) dimensions on the weights and the inputs."""

    def __init__(self, half: int, expansion: int, *, relu: bool, init_scale: float,
                 g: torch.Generator, dtype: torch.dtype):
        super().__init__()
        self.relu = relu
        # C ~ N(0, 1/half) so that z C has O(1) entries; W ~ init_scale · N(0, 1/M).
        self.register_buffer("C", torch.randn(half, expansion, generator=g, dtype=dtype) / math.sqrt(half))
        self.W = nn.Parameter(init_scale * torch.randn(half, expansion, generator=g, dtype=dtype) / math.sqrt(expansion))
        self.b = nn.Parameter(torch.zeros(half, dtype=dtype))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """``φ(z C)`` (… × n × M): the half is linear in ``W``, ``b`` given these."""
        a = z @ self.C
        return torch.relu(a) if self.relu else a

    def design(self, z: torch.Tensor) -> torch.Tensor:
        """``[φ(z C), 1]`` (… × n × (M+1)): the half's output is ``design(z) · [W b]ᵀ``."""
        a = self.features(z)
        return torch.cat([a, torch.ones(*a.shape[:-1], 1, dtype=a.dtype, device=a.device)], dim=-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(z) @ self.W.mT + self.b.unsqueeze(-2)

    def jvp_input(self, z: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
        """Derivative of the half w.r.t. its input ``z`` applied to ``dz`` (weights fixed)."""
        da = dz @ self.C
        if self.relu:
            da = da * (z @ self.C > 0).to(da.dtype)
        return da @ self.W.mT

    def vjp_input(self, z: torch.Tensor, cot: torch.Tensor) -> torch.Tensor:
        """``k`` cotangents per example, ``cot`` (… × n × k × half), pulled back to the input ``z``."""
        g = cot @ self.W.unsqueeze(-3)
        if self.relu:
            g = g * (z @ self.C > 0).to(g.dtype).unsqueeze(-2)
        return g @ self.C.mT.unsqueeze(-3)


class CouplingBlock(nn.Module):
    """One additive coupling block (``F`` then ``G``); exactly invertible."""

    def __init__(self, width: int, expansion: int, *, relu: bool, init_scale: float,
                 g: torch.Generator, dtype: torch.dtype):
        super().__init__()
        half = width // 2
        self.F = CouplingHalf(half, expansion, relu=relu, init_scale=init_scale, g=g, dtype=dtype)
        self.G = CouplingHalf(half, expansion, relu=relu, init_scale=init_scale, g=g, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        y1 = x1 + self.F(x2)
        y2 = x2 + self.G(y1)
        return torch.cat([y1, y2], dim=-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y.chunk(2, dim=-1)
        x2 = y2 - self.G(y1)
        x1 = y1 - self.F(x2)
        return torch.cat([x1, x2], dim=-1)

    def inverse_jvp(self, y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """``dx`` with ``J_block(x) dx = dy`` (weights fixed), at the block output ``y``."""
        y1, y2 = y.chunk(2, dim=-1)
        dy1, dy2 = dy.chunk(2, dim=-1)
        x2 = y2 - self.G(y1)
        dx2 = dy2 - self.G.jvp_input(y1, dy1)
        dx1 = dy1 - self.F.jvp_input(x2, dx2)
        return torch.cat([dx1, dx2], dim=-1)


class ReversibleNet(nn.Module):
    """``L`` coupling blocks between a fixed input map ``P`` and a fixed readout ``U``.

    Args:
        in_dim: input features (flattened); ``num_classes``: outputs ``k`` (``k ≤ width``).
        width: feature width ``d`` (even, ``≥ in_dim`` for an invertible input map).
        expansion: ``M``, the inverted-bottleneck width of every half-function.
        depth: number of blocks ``L``. ``init_scale``: std multiplier of the trainable ``W``.
        linear_first: identity ``φ`` in the first block (then it alone is not exactly solvable).
        seed, dtype: the fixed and initial weights are drawn from ``torch.Generator(seed)``.
        generator: draw them from this generator instead (e.g. :func:`curvnb.seeds.torch_generator`,
            which uses all 64 bits of a derived seed; ``manual_seed`` keeps only 32 on the CPU).
    """

    def __init__(self, in_dim: int, num_classes: int, *, width: int, expansion: int, depth: int,
                 init_scale: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float32,
                 linear_first: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        if width % 2 or width < 2:
            raise ValueError(f"width must be a positive even integer, got {width}")
        if num_classes > width:
            raise ValueError(f"num_classes ({num_classes}) must be ≤ width ({width})")
        if depth < 1 or expansion < 1:
            raise ValueError(f"depth and expansion must be ≥ 1, got {depth}, {expansion}")
        g = generator if generator is not None else cpu_generator(seed)
        self.in_dim, self.num_classes, self.width, self.expansion, self.depth = in_dim, num_classes, width, expansion, depth
        self.members: int | None = None  # set by stack(): size of the leading ensemble dimension
        self.register_buffer("P", _orthonormal(in_dim, width, g, dtype))
        self.blocks = nn.ModuleList(
            CouplingBlock(width, expansion, relu=l > 0 or not linear_first, init_scale=init_scale, g=g, dtype=dtype)
            for l in range(depth))
        self.register_buffer("U", _orthonormal(width, num_classes, g, dtype))

    # ------------------------------------------------------------------ ensembles
    @classmethod
    def stack(cls, nets: Sequence["ReversibleNet"]) -> "ReversibleNet":
        """One network holding ``len(nets)`` members (weights and fixed matrices stacked on dim 0)."""
        if not nets or any(n.members is not None for n in nets):
            raise ValueError("stack needs a non-empty list of plain (unstacked) ReversibleNets")
        shape = lambda n: (n.in_dim, n.num_classes, n.width, n.expansion, n.depth,  # noqa: E731
                           tuple(b.F.relu for b in n.blocks))
        if any(shape(n) != shape(nets[0]) for n in nets):
            raise ValueError("stack needs networks of the same shape (in_dim, classes, width, expansion, depth, φ)")
        out = copy.deepcopy(nets[0])
        with torch.no_grad():
            for name, _ in list(nets[0].named_parameters()):
                _assign(out, name, nn.Parameter(torch.stack([n.get_parameter(name).detach() for n in nets])))
            for name, _ in list(nets[0].named_buffers()):
                _assign(out, name, torch.stack([n.get_buffer(name) for n in nets]))
        out.members = len(nets)
        return out

    def member(self, i: int) -> "ReversibleNet":
        """Member ``i`` of a stacked network as a plain network (a copy of its current weights)."""
        if self.members is None:
            raise ValueError("member() needs a network made by ReversibleNet.stack")
        out = copy.deepcopy(self)
        with torch.no_grad():
            for name, p in self.named_parameters():
                _assign(out, name, nn.Parameter(p.detach()[i].clone()))
            for name, b in self.named_buffers():
                _assign(out, name, b[i].clone())
        out.members = None
        return out

    # ------------------------------------------------------------------ forward / inverse
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) if self.members is None else x) @ self.P

    def block_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[h₀, h₁, …, h_L]``: the features entering each block and the last features."""
        hs = [self.embed(x)]
        for block in self.blocks:
            hs.append(block(hs[-1]))
        return hs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last features ``h_L`` (… × n × d)."""
        return self.block_inputs(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.U

    def inverse(self, h: torch.Tensor) -> torch.Tensor:
        """Inputs ``x`` from the last features ``h_L`` (exact; needs ``in_dim ≤ width``)."""
        if self.in_dim > self.width:
            raise ValueError("inputs are projected down (in_dim > width): they cannot be recovered")
        for block in reversed(self.blocks):
            h = block.inverse(h)
        return h @ self.P.mT


def _assign(module: nn.Module, dotted: str, value: torch.Tensor) -> None:
    """Replace the parameter or buffer ``dotted`` (e.g. ``blocks.0.F.W``) of ``module`` by ``value``."""
    prefix, _, leaf = dotted.rpartition(".")
    parent = module.get_submodule(prefix) if prefix else module
    if isinstance(value, nn.Parameter):
        setattr(parent, leaf, value)
    else:
        parent.register_buffer(leaf, value)
