"""Parameters as one flat vector (in ``model.parameters()`` order), and data as a list of batches."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad``, in ``model.parameters()`` order (the flat layout)."""
    return [p for p in model.parameters() if p.requires_grad]


def num_parameters(model: nn.Module) -> int:
    """P, the length of the flat parameter vector."""
    return sum(p.numel() for p in trainable_parameters(model))


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate ``tensors`` (e.g. parameters or their gradients) into one flat vector."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("flatten needs at least one tensor")
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_like(vector: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector (or a batch ``(..., P)`` of them) into tensors shaped like ``params``."""
    params = list(params)
    sizes = [p.numel() for p in params]
    total = sum(sizes)
    if vector.shape[-1] != total:
        raise ValueError(f"vector has length {vector.shape[-1]}, the parameters have {total} entries")
    lead = vector.shape[:-1]
    return [chunk.reshape(*lead, *p.shape) for chunk, p in zip(torch.split(vector, sizes, dim=-1), params)]


def as_batches(data: Any) -> list[Batch]:
    """``data`` as a list of ``(x, y)`` batches: one ``(x, y)`` pair, or an iterable of pairs."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        batches = [tuple(data)]
    else:
        try:
            batches = [tuple(b) for b in data]
        except TypeError as exc:
            raise ValueError("data must be one (x, y) batch or an iterable of (x, y) batches") from exc
    if not batches:
        raise ValueError("data holds no batches")
    for b in batches:
        if len(b) != 2 or not all(isinstance(t, torch.Tensor) for t in b):
            raise ValueError("each batch must be a pair (x, y) of tensors")
        if len(b[0]) != len(b[1]) or len(b[0]) == 0:
            raise ValueError(f"batch with {len(b[0])} inputs and {len(b[1])} targets")
    return batches  # type: ignore[return-value]


class FunctionalModel:
    """``model`` as a pure function of its trainable parameters (a tuple of tensors).

    Buffers (e.g. BatchNorm running statistics) are passed as copies, so evaluating the
    operators never changes the model. The model is evaluated in the mode it is in: a model
    with BatchNorm in ``train()`` mode uses batch statistics (the curvature of the training
    loss of that batch); in ``eval()`` mode it uses the running statistics. Dropout should be
    off (``eval()``), otherwise the loss is random and no operator is well defined.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no parameters with requires_grad=True")
        self.names = [n for n, _ in named]
        self.params = tuple(p.detach() for _, p in named)
        self.frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {n: b for n, b in model.named_buffers()}
        self.num_params = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device

    def __call__(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        state = dict(zip(self.names, params))
        state.update(self.frozen)
        # copies: a BatchNorm in train mode would otherwise update the model's running stats
        state.update({n: b.clone() for n, b in self.buffers.items()})
        return torch.func.functional_call(self.model, state, (x,))

    def loss(self, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor) -> Callable:
        """``params -> loss_fn(model(params, x), y)``."""
        return lambda params: loss_fn(self(params, x), y)

    def unflatten(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(unflatten_like(v, self.params))

    def check_vector(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.shape[-1] != self.num_params:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"expected a flat vector of length P={self.num_params}, got {shape}")
        return v.to(device=self.device, dtype=self.dtype)


def has_batchnorm_in_training(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())
