"""Curvature-corrected optimizers with a fractional power α (α = 0: gradient descent, α = 1: NGD).

* :class:`FractionalNaturalGradient` — the full Gauss–Newton ``G = JᵀJ`` of a deep linear network
  (``J`` the Jacobian of the end-to-end map ``W = W_d⋯W_1``), applied as ``Δθ = −lr (G + δ)^{−α} ∇L``
  through the ``n_out n_in`` function-space kernel ``JJᵀ`` (no ``P × P`` matrix).
* :class:`BlockDiagonalNaturalGradient` — layer-wise Kronecker factors (K-FAC) for ``nn.Linear``
  layers of any network, ``ΔW = −lr (B + δ)^{−α} ∇W (A + δ)^{−α}`` with ``A = E[a aᵀ]`` (layer
  inputs, with a 1 appended for a trainable bias) and ``B = E[Σ_k g_k g_kᵀ]`` (the backpropagated
  columns of the loss's output-Hessian square root). Exact block-diagonal Gauss–Newton for a deep
  linear network on whitened inputs with the squared loss. Trainable parameters outside
  ``nn.Linear`` layers (convolutions, norms, …) are refused unless ``unsupported="sgd"`` (then they
  take plain gradient steps, with a warning naming them); frozen parameters are skipped.

Both follow the ordinary loop ``zero_grad(); loss.backward(); step(...)`` and share the maths with
:mod:`curvnb.linear.dynamics`. Negative powers are pseudo-powers: eigenvalues at or below
``rcond × λ_max`` of a factor count as zero (mapped to 0 without damping, to ``δ^{−α}`` with it).
A non-finite update raises :class:`FloatingPointError` naming the step, or with
``on_nonfinite="mark"`` sets ``diverged = True`` and leaves the parameters untouched.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
from torch import nn

from curvnb.linear.dynamics import full_natural_direction, kronecker_direction
from curvnb.linear.network import end_to_end

__all__ = ["FractionalNaturalGradient", "BlockDiagonalNaturalGradient", "NONFINITE_POLICIES", "UNSUPPORTED_POLICIES"]

NONFINITE_POLICIES = ("raise", "mark")
UNSUPPORTED_POLICIES = ("raise", "sgd")
OUTPUT_LOSSES = ("mse", "cross_entropy")


class _CurvatureOptimizer(torch.optim.Optimizer):
    """Shared checks, step counting, divergence handling and step-size bookkeeping."""

    def __init__(self, params, *, lr: float, alpha: float, damping: float, rcond: float, on_nonfinite: str):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"the fractional power alpha must lie in [0, 1], got {alpha}")
        if damping < 0 or rcond < 0:
            raise ValueError(f"damping and rcond must be non-negative, got {damping}, {rcond}")
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"unknown on_nonfinite {on_nonfinite!r}: allowed values are "
                             f"{', '.join(map(repr, NONFINITE_POLICIES))}")
        super().__init__(params, dict(lr=lr, alpha=alpha, damping=damping, rcond=rcond))
        self.on_nonfinite = on_nonfinite
        self.steps_taken = 0
        self.diverged = False
        self.last_step_norm = 0.0   # ‖Δθ‖ of the last step (the stability figure plots it)

    def _apply(self, params: list[torch.Tensor], updates: list[torch.Tensor]) -> None:
        """``p += u`` for all, or nothing when any update is non-finite."""
        norm = torch.sqrt(sum((u.double() ** 2).sum() for u in updates))
        if not torch.isfinite(norm):
            if self.on_nonfinite == "raise":
                raise FloatingPointError(f"{type(self).__name__}: non-finite update at step {self.steps_taken + 1}; "
                                         "parameters left unchanged (lower lr, raise damping, or use "
                                         "on_nonfinite='mark')")
            self.diverged = True
            return
        with torch.no_grad():
            for p, u in zip(params, updates):
                p.add_(u)
        self.last_step_norm = float(norm)
        self.steps_taken += 1


def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("the model has no nn.Linear layers")
    return layers


class FractionalNaturalGradient(_CurvatureOptimizer):
    """``Δθ = −lr (JᵀJ + δ)^{−α} ∇L`` for a deep linear network ``x ↦ W_d⋯W_1 x`` (bias-free ``nn.Linear``
    layers in forward order, nothing else trainable). ``J`` is the Jacobian of the map ``W``: for
    whitened inputs and the squared loss ``JᵀJ`` is the Gauss–Newton (= Fisher) matrix. Exact for
    any loss that depends on the parameters only through ``W``; cost one eigendecomposition of the
    ``n_out n_in`` square kernel ``JJᵀ`` per step."""

    def __init__(self, model: nn.Module, lr: float, alpha: float = 1.0, *, damping: float = 0.0,
                 rcond: float = 1e-12, on_nonfinite: str = "raise"):
        layers = _linear_layers(model)
        if any(layer.bias is not None for layer in layers):
            raise ValueError("FractionalNaturalGradient needs bias-free nn.Linear layers (a deep linear network)")
        weights = [layer.weight for layer in layers]
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        if frozen:
            raise ValueError(f"FractionalNaturalGradient preconditions the whole chain W_d⋯W_1 and needs every "
                             f"layer trainable; frozen: {', '.join(frozen)} (use BlockDiagonalNaturalGradient, "
                             "which skips frozen layers)")
        trainable = [p for p in model.parameters() if p.requires_grad]
        if len(trainable) != len(weights) or any(p is not w for p, w in zip(trainable, weights)):
            raise ValueError("every trainable parameter must be an nn.Linear weight, in forward order")
        _check_is_linear_chain(model, weights)
        super().__init__(weights, lr=lr, alpha=alpha, damping=damping, rcond=rcond, on_nonfinite=on_nonfinite)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        weights = group["params"]
        if any(w.grad is None for w in weights):
            raise RuntimeError("FractionalNaturalGradient.step() needs gradients: call loss.backward() first")
        direction = full_natural_direction([w.detach() for w in weights], [w.grad for w in weights], group["alpha"],
                                           damping=group["damping"], rcond=group["rcond"])
        self._apply(weights, [-group["lr"] * d for d in direction])
        return loss


def _check_is_linear_chain(model: nn.Module, weights: list[torch.Tensor]) -> None:
    """The model must compute ``x W_1ᵀ ⋯ W_dᵀ``: checked once on a random probe batch."""
    with torch.no_grad():
        probe = torch.randn(3, weights[0].shape[1], dtype=weights[0].dtype, device=weights[0].device,
                            generator=torch.Generator(device=weights[0].device).manual_seed(0))
        try:
            expected = probe @ end_to_end([w.detach() for w in weights]).T
            actual = model(probe)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"the model is not a chain of its nn.Linear layers: {exc}") from exc
        if actual.shape != expected.shape or not torch.allclose(actual, expected, rtol=1e-4, atol=1e-6 * (1 + expected.abs().max())):
            raise ValueError("the model does not compute the product of its nn.Linear weights: "
                             "FractionalNaturalGradient is exact only for deep linear networks "
                             "(use BlockDiagonalNaturalGradient for other networks)")


class BlockDiagonalNaturalGradient(_CurvatureOptimizer):
    """Layer-wise fractional natural gradient with Kronecker factors (fractional K-FAC) for every
    trainable ``nn.Linear`` layer of ``model`` (frozen layers are skipped; a frozen bias just drops
    the appended 1).

    Trainable parameters it cannot precondition (convolutions, norm layers, a trainable bias of a
    frozen ``nn.Linear`` weight, …) are refused with an error naming them, unless
    ``unsupported="sgd"``: then they take plain gradient steps ``−lr ∇p`` (with a warning naming them).

    Call ``step(inputs)`` after ``loss.backward()``: the factors are recomputed on ``inputs`` every
    ``update_every`` steps and averaged as ``F ← decay F + (1 − decay) F_new`` (``decay = 0`` keeps
    only the newest). ``loss`` names the output loss whose Gauss–Newton factors are used: ``"mse"``
    for the per-example loss ``½‖f − y‖²`` (output Hessian ``I``), ``"cross_entropy"`` for softmax
    cross-entropy (``diag(p) − ppᵀ``, exactly, through its ``Σ_k p_k (e_k − p)(e_k − p)ᵀ`` form)."""

    def __init__(self, model: nn.Module, lr: float, alpha: float = 1.0, *, damping: float = 0.0,
                 rcond: float = 1e-12, loss: str = "mse", factor_decay: float = 0.0, update_every: int = 1,
                 on_nonfinite: str = "raise", unsupported: str = "raise"):
        if loss not in OUTPUT_LOSSES:
            raise ValueError(f"unknown loss {loss!r}: allowed values are {', '.join(map(repr, OUTPUT_LOSSES))}")
        if not 0.0 <= factor_decay < 1.0:
            raise ValueError(f"factor_decay must lie in [0, 1), got {factor_decay}")
        if update_every < 1:
            raise ValueError(f"update_every must be at least 1, got {update_every}")
        if unsupported not in UNSUPPORTED_POLICIES:
            raise ValueError(f"unknown unsupported {unsupported!r}: allowed values are "
                             f"{', '.join(map(repr, UNSUPPORTED_POLICIES))}")
        _linear_layers(model)  # at least one nn.Linear
        self.model = model
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.weight.requires_grad]
        if not self.layers:
            raise ValueError("every nn.Linear layer of the model is frozen: nothing to precondition")
        covered = {id(p) for layer in self.layers for p in (layer.weight, self._bias(layer)) if p is not None}
        others = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
        if others and unsupported == "raise":
            raise ValueError(f"BlockDiagonalNaturalGradient preconditions only trainable nn.Linear layers; these "
                             f"trainable parameters would get no update: {', '.join(n for n, _ in others)}. "
                             "Freeze them, or pass unsupported='sgd' to give them plain gradient steps")
        if others:
            warnings.warn("BlockDiagonalNaturalGradient: plain gradient steps (no preconditioning) for "
                          + ", ".join(n for n, _ in others), stacklevel=2)
        self.plain = [p for _, p in others]
        self.loss, self.factor_decay, self.update_every = loss, factor_decay, update_every
        self.factors: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (output B, input A) per layer
        params = [p for layer in self.layers for p in (layer.weight, self._bias(layer)) if p is not None] + self.plain
        super().__init__(params, lr=lr, alpha=alpha, damping=damping, rcond=rcond, on_nonfinite=on_nonfinite)

    @staticmethod
    def _bias(layer: nn.Linear) -> torch.Tensor | None:
        """The layer's bias if it is trained (a frozen bias is a constant input shift, not preconditioned)."""
        return layer.bias if layer.bias is not None and layer.bias.requires_grad else None

    def update_factors(self, inputs: torch.Tensor) -> None:
        """Recompute the Kronecker factors on ``inputs`` (one forward pass and one backward pass per
        output dimension, through hooks that only record layer inputs and outputs)."""
        records: list[tuple[torch.Tensor, torch.Tensor]] = []
        hooks = [layer.register_forward_hook(lambda _m, args, out: records.append((args[0].detach(), out)))
                 for layer in self.layers]
        try:
            with torch.enable_grad():
                outputs = self.model(inputs)
                if outputs.ndim != 2:
                    raise ValueError(f"expected (batch, outputs) model outputs, got shape {tuple(outputs.shape)}")
                n = outputs.shape[0]
                columns = _hessian_root_columns(outputs.detach(), self.loss)
                layer_outputs = [out for _, out in records]
                output_factors = [torch.zeros(o.shape[-1], o.shape[-1], dtype=o.dtype, device=o.device)
                                  for o in layer_outputs]
                for k, column in enumerate(columns):
                    grads = torch.autograd.grad(outputs, layer_outputs, grad_outputs=column,
                                                retain_graph=k + 1 < len(columns))
                    for f, g in zip(output_factors, grads):
                        f.add_(g.reshape(-1, g.shape[-1]).T @ g.reshape(-1, g.shape[-1]) / n)
        finally:
            for h in hooks:
                h.remove()
        if len(records) != len(self.layers):
            raise RuntimeError("every nn.Linear layer must be called exactly once per forward pass")
        new = []
        for layer, (a, _), b in zip(self.layers, records, output_factors):
            a = a.reshape(-1, a.shape[-1])
            if self._bias(layer) is not None:
                a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
            new.append((b, a.T @ a / n))
        if self.factors is None or self.factor_decay == 0.0:
            self.factors = new
        else:
            d = self.factor_decay
            self.factors = [(d * b0 + (1 - d) * b, d * a0 + (1 - d) * a) for (b0, a0), (b, a) in zip(self.factors, new)]

    @torch.no_grad()
    def step(self, inputs: Optional[torch.Tensor] = None, closure: Optional[Callable[[], torch.Tensor]] = None):
        """One update from the current ``.grad``; ``inputs`` (the batch) refreshes the factors when due."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if inputs is not None and self.steps_taken % self.update_every == 0:
            self.update_factors(inputs)
        if self.factors is None:
            raise RuntimeError("BlockDiagonalNaturalGradient.step() needs the batch inputs at least on the first "
                               "step: opt.step(x)")
        group = self.param_groups[0]
        params, updates = [], []
        for layer, (out_factor, in_factor) in zip(self.layers, self.factors):
            bias = self._bias(layer)
            if layer.weight.grad is None or (bias is not None and bias.grad is None):
                raise RuntimeError("BlockDiagonalNaturalGradient.step() needs gradients: call loss.backward() first")
            grad = layer.weight.grad
            if bias is not None:
                grad = torch.cat([grad, bias.grad[:, None]], dim=1)
            direction = kronecker_direction(grad, out_factor, in_factor, group["alpha"],
                                            damping=group["damping"], rcond=group["rcond"])
            if bias is not None:
                params += [layer.weight, bias]
                updates += [-group["lr"] * direction[:, :-1], -group["lr"] * direction[:, -1]]
            else:
                params.append(layer.weight)
                updates.append(-group["lr"] * direction)
        for p in self.plain:  # unsupported="sgd": plain gradient steps
            if p.grad is not None:
                params.append(p)
                updates.append(-group["lr"] * p.grad)
        self._apply(params, updates)
        return loss


def _hessian_root_columns(outputs: torch.Tensor, loss: str) -> list[torch.Tensor]:
    """Per-example columns ``c_k`` with ``Σ_k c_k c_kᵀ`` = the output Hessian of the per-example loss."""
    n, k = outputs.shape
    if loss == "mse":
        eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)
        return [eye[j].expand(n, k) for j in range(k)]
    p = torch.softmax(outputs, dim=1)
    eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)
    return [p[:, j:j + 1].sqrt() * (eye[j] - p) for j in range(k)]
