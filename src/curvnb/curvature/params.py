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


#: Modules that draw random numbers in ``train()`` mode (the Dropout family, RReLU).
STOCHASTIC_MODULES: tuple[type, ...] = (nn.modules.dropout._DropoutNd, nn.RReLU)

#: Loss reductions whose batches can be combined exactly: ``"mean"`` (and KL's per-example
#: ``"batchmean"``) weights batch b by n_b / N, ``"sum"`` by 1.
REDUCTIONS = ("mean", "sum")


def stochastic_modules(model: nn.Module) -> list[str]:
    """Names (``"2 (Dropout)"``) of the submodules that are random in their current mode: the
    Dropout family with p > 0 and RReLU, in ``train()`` mode. BatchNorm is not among them: in
    ``train()`` mode it is a deterministic function of the batch."""
    found = []
    for name, m in model.named_modules():
        if isinstance(m, STOCHASTIC_MODULES) and m.training and getattr(m, "p", 1.0) > 0:
            found.append(f"{name or '<root>'} ({type(m).__name__})")
    return found


def check_deterministic(model: nn.Module, allow_stochastic: bool, what: str = "curvature") -> None:
    """Refuse a model whose loss is random (stochastic modules in training mode) unless allowed."""
    if allow_stochastic:
        return
    found = stochastic_modules(model)
    if found:
        raise ValueError(
            f"the model has stochastic modules in training mode: {', '.join(found)}; the loss is random, so "
            f"its {what} is not one well-defined quantity (two identical calls give different answers). Call "
            "model.eval() first (or .eval() on just those modules, to keep BatchNorm batch statistics), or pass "
            "allow_stochastic=True to measure the loss with one draw of the randomness per batch")


def loss_reduction(loss_fn: Callable, reduction: str | None = None) -> str:
    """The reduction of ``loss_fn`` over examples, ``"mean"`` or ``"sum"``.

    ``reduction`` overrides it; otherwise ``loss_fn.reduction`` where the loss has one (torch's loss
    modules). A loss without one (a plain function) must say which it is: nothing guesses, since
    taking a sum for a mean weights the batches wrongly and scales every result by the batch size.
    ``"none"`` is refused: the operators need a scalar loss."""
    r = reduction if reduction is not None else getattr(loss_fn, "reduction", None)
    if r is None:
        name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        raise ValueError(f"the loss {name!r} has no .reduction attribute, so whether it returns the mean or the sum "
                         "over a batch's examples is unknown: pass reduction='mean' or reduction='sum' (torch's "
                         "loss modules, e.g. nn.CrossEntropyLoss(), carry their own)")
    if r == "batchmean":  # KLDivLoss: sum over the batch / batch size, a per-example mean
        r = "mean"
    if r not in REDUCTIONS:
        raise ValueError(f"loss reduction {r!r} is not supported: the curvature operators need a scalar loss "
                         f"that is the mean (or the sum) of per-example losses; use reduction='mean' or 'sum'"
                         + (" (for per-example gradients use per_example_grads)" if r == "none" else ""))
    return r


def batch_weights(loss_fn: Callable, batches: Sequence[Batch], reduction: str, num_examples: int | None = None,
                  distributed: bool = False) -> list[float]:
    """The weight of each batch's loss in the loss over all ``num_examples`` examples (default: the
    examples of ``batches``): n_b / N for ``"mean"``, 1 for ``"sum"``.

    A mean that is not over examples cannot be combined by batch size: class-weighted losses
    (``weight=``) and targets equal to ``ignore_index`` are refused when there is more than one batch."""
    n = num_examples if num_examples is not None else sum(len(x) for x, _ in batches)
    if reduction == "sum":
        return [1.0] * len(batches)
    if len(batches) > 1 or distributed:
        if getattr(loss_fn, "weight", None) is not None:
            raise ValueError("a class-weighted mean loss (weight=...) divides by the batch's total weight, not "
                             "its size, so several batches cannot be combined exactly; pass one batch, or use "
                             "reduction='sum' and divide the result by the total weight yourself")
        ignore = getattr(loss_fn, "ignore_index", None)
        if ignore is not None and any(bool((y == ignore).any()) for _, y in batches if not y.is_floating_point()):
            raise ValueError(f"targets equal to ignore_index={ignore} make the mean loss divide by the number "
                             "of kept targets, not the batch size, so several batches cannot be combined "
                             "exactly; drop those examples, pass one batch, or use reduction='sum'")
    return [len(x) / n for x, _ in batches]


def scalar_loss(value: torch.Tensor) -> torch.Tensor:
    """``value`` if it is a scalar loss, else a clear error (a loss with ``reduction="none"``)."""
    if value.dim() != 0:
        if value.numel() == 1:
            return value.reshape(())
        raise ValueError(f"loss_fn returned a tensor of shape {tuple(value.shape)}, not a scalar: the operators "
                         "need the mean (or sum) over the batch; use reduction='mean'")
    return value


class FunctionalModel:
    """``model`` as a pure function of its trainable parameters (a tuple of tensors).

    Buffers (e.g. BatchNorm running statistics) are passed as copies, so evaluating the
    operators never changes the model. The model is evaluated in the mode it is in: a model
    with BatchNorm in ``train()`` mode uses batch statistics (the curvature of the training
    loss of that batch); in ``eval()`` mode it uses the running statistics. Stochastic modules
    (Dropout) in ``train()`` mode make the loss random: they are refused (see
    :func:`check_deterministic`) unless ``allow_stochastic=True``.
    """

    def __init__(self, model: nn.Module, allow_stochastic: bool = True):
        check_deterministic(model, allow_stochastic)
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
        """``params -> loss_fn(model(params, x), y)``, checked to be a scalar."""
        return lambda params: scalar_loss(loss_fn(self(params, x), y))

    def unflatten(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(unflatten_like(v, self.params))

    def check_vector(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.shape[-1] != self.num_params:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"expected a flat vector of length P={self.num_params}, got {shape}")
        return v.to(device=self.device, dtype=self.dtype)


def has_batchnorm_in_training(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())
