"""Deep linear networks ``W = W_d ⋯ W_1``: weights as matrices, or as an ``nn.Module``."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from curvnb.seeds import cpu_generator

__all__ = ["DeepLinearNetwork", "end_to_end", "partial_products", "random_weights", "balanced_weights"]


def end_to_end(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """The input–output map ``W_d ⋯ W_1`` of weights ``[W_1, …, W_d]`` (``W_i`` is ``n_i × n_{i−1}``).

    Leading batch dimensions (one network per seed, ``… × n_i × n_{i−1}``) are carried through."""
    if not weights:
        raise ValueError("a deep linear network needs at least one weight matrix")
    product = weights[0]
    for w in weights[1:]:
        if w.shape[-1] != product.shape[-2]:
            raise ValueError(f"weight shapes do not chain: {tuple(product.shape)} then {tuple(w.shape)}")
        product = w @ product
    return product


def partial_products(weights: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(A, B)`` with ``A_i = W_{i−1}⋯W_1`` and ``B_i = W_d⋯W_{i+1}`` (identities at the ends),
    so that ``W = B_i W_i A_i`` for every layer ``i``. Batched weights give batched products (the
    identities at the ends are expanded to the batch)."""
    d = len(weights)
    batch = weights[0].shape[:-2]
    eye = lambda n: torch.eye(n, dtype=weights[0].dtype, device=weights[0].device).expand(*batch, n, n)  # noqa: E731
    before = [eye(weights[0].shape[-1])]
    for w in weights[:-1]:
        before.append(w @ before[-1])
    after = [eye(weights[-1].shape[-2])]
    for w in reversed(weights[1:]):
        after.append(after[-1] @ w)
    after.reverse()
    assert len(before) == len(after) == d
    return before, after


def random_weights(widths: Sequence[int], scale: float, *, seed: int = 0, init: str = "gaussian",
                   dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Weights ``W_i`` of shape ``widths[i+1] × widths[i]``.

    ``init="gaussian"``: i.i.d. entries ``N(0, scale²)``; ``init="orthogonal"``: ``scale`` times a
    random (semi-)orthogonal matrix (all singular values equal to ``scale``). Drawn from ``generator`` if
    given (e.g. :func:`curvnb.seeds.torch_generator`, all 64 bits of a derived seed), else from ``seed``."""
    if len(widths) < 2:
        raise ValueError(f"widths needs at least an input and an output width, got {list(widths)}")
    if init not in ("gaussian", "orthogonal"):
        raise ValueError(f"unknown init {init!r}: allowed values are 'gaussian', 'orthogonal'")
    g = generator if generator is not None else cpu_generator(seed)
    weights = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        w = torch.randn(n_out, n_in, generator=g, dtype=dtype)
        if init == "orthogonal":
            u, _, vh = torch.linalg.svd(w, full_matrices=False)
            w = u @ vh
        weights.append(scale * w)
    return weights


def balanced_weights(target: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """Balanced weights with end-to-end map ``target = U diag(w) Vᵀ``: ``W_1 = R diag(w)^{1/d} Vᵀ``,
    inner ``W_i = R diag(w)^{1/d} Rᵀ`` with ``R = I``, ``W_d = U diag(w)^{1/d}`` (all square, rank-aligned).
    Every ``C_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ`` is zero."""
    u, w, vh = torch.linalg.svd(target, full_matrices=False)
    root = torch.diag(w ** (1.0 / depth))
    if depth == 1:
        return [target.clone()]
    return [root @ vh] + [root.clone() for _ in range(depth - 2)] + [u @ root]


class DeepLinearNetwork(nn.Module):
    """``x ↦ W_d ⋯ W_1 x`` as a chain of bias-free ``nn.Linear`` layers (trainable by any optimizer)."""

    def __init__(self, widths: Sequence[int] | None = None, weights: Sequence[torch.Tensor] | None = None,
                 *, scale: float = 1.0, seed: int = 0, init: str = "gaussian", dtype: torch.dtype = torch.float64):
        super().__init__()
        if weights is None:
            if widths is None:
                raise ValueError("give either widths or weights")
            weights = random_weights(widths, scale, seed=seed, init=init, dtype=dtype)
        end_to_end(weights)  # validates the shapes
        self.layers = nn.ModuleList()
        for w in weights:
            layer = nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=w.dtype, device=w.device)
            with torch.no_grad():
                layer.weight.copy_(w)
            self.layers.append(layer)

    @property
    def depth(self) -> int:
        return len(self.layers)

    def weights(self) -> list[torch.Tensor]:
        """The current weight matrices ``[W_1, …, W_d]`` (detached)."""
        return [layer.weight.detach() for layer in self.layers]

    def end_to_end(self) -> torch.Tensor:
        return end_to_end(self.weights())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
