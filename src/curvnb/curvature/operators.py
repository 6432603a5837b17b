"""Hessian- and Gauss–Newton-vector products on the flat parameter vector.

**Reusable operators** (:class:`CurvatureOperator`, for many products on fixed data). For each batch
something is built once and reused by every product:

* ``method="reuse"``: the graph of the gradient; a Hessian-vector product is one backward pass
  through it (≈1.5–1.9 gradients on MLPs), memory ≈ one gradient graph per batch;
* ``method="linearize"``: the gradient's forward-mode linearisation traced once
  (:func:`curvnb.curvature.linearize.linearize`: ``torch.func.linearize`` with the two tangents of
  each convolution's input gradient fused into one call) — ≈1.3 gradients per product on
  convolutional nets, where double backward through a convolution is expensive, against ≈2 for
  ``"reuse"``; tracing costs tens of gradients once per batch and
  the traced program holds more memory than the gradient graph (both measured by
  ``benchmarks/curvature.py``), so it pays off only after tens of products;
* ``method="auto"`` (default): ``"reuse"`` for models without convolutions; for models with
  convolutions ``"reuse"`` for the first :data:`AUTO_LINEARIZE_AFTER` products of each batch, then
  ``"linearize"`` (its tracing then costs at most about what the slower products would have cost
  so far: few products — a top-k Lanczos — never pay for tracing, many — SLQ, dense matrices —
  run at the faster rate). Pass ``method="reuse"`` to keep the smaller memory, or
  ``method="linearize"`` to trace at once;
* ``method="rebuild"``: nothing is kept, every product re-runs forward-over-reverse (a baseline).

**One-shot products** (:func:`hvp`, :func:`ggn_vp`, and operators with ``cache=False``) build
nothing to keep: an HVP is one plain double backward pass, a GGN product one forward pass carrying
the tangent ``J v`` (forward-mode AD) followed by one backward pass of ``H_out J v`` (≈2 gradients).

**Data.** One ``(x, y)`` batch or an iterable of batches; the loss over several batches is combined
exactly: for a mean loss (``reduction="mean"``, the default of torch's losses) batch b is weighted
by n_b / N, for ``reduction="sum"`` by 1. The reduction is read from ``loss_fn.reduction`` (torch's
loss modules); a plain function has none and must pass ``reduction="mean"`` or ``"sum"`` (refused
otherwise: nothing guesses); a loss that is not a scalar (``reduction="none"``) is refused. With ``process_group`` the batches are one
rank's shard and products are all-reduced (:mod:`curvnb.curvature.distributed`).

**Which cases take a slower, safe path.** Forward-mode AD never runs through the loss: the loss's
second derivative ``H_out u`` is always computed by reverse mode on the outputs (for the GGN, and
inside the Hessian's ``"linearize"``/``"rebuild"`` programs, see :meth:`CurvatureOperator._gradient`),
because torch's forward mode has no rule for some losses (``HuberLoss``, ``SmoothL1Loss``), raises
for others (``MSELoss`` with a mean) and crashes the interpreter when traced through ``mse_loss``'s
gradient; this costs an output-sized double backward, nothing on the network's scale. The traced
program (:func:`curvnb.curvature.linearize.linearize`) is functionalised, so products are pure
(bit-identical on repetition); in-place ops on data-only tensors in ``forward`` are then recomputed
at every product instead of folded (a small cost). A model whose ``forward`` writes in place into a
tensor from outside (its input, a closed-over tensor) or uses an op without a forward-mode rule
cannot be traced: ``"linearize"`` (and ``"auto"`` on conv nets) falls back to ``"reuse"``, double
backward (≈2 gradients per product on conv nets against ≈1.3 traced, see above). Unused trainable parameters get zero rows
on every path. ``"auto"`` switches method after :data:`AUTO_LINEARIZE_AFTER` products: each method
is pure, but the products before and after the switch differ by rounding (≈1e-16 relative).

**Randomness.** A model with stochastic modules in training mode (Dropout, RReLU) has a random loss
and no well-defined curvature: it is refused unless ``allow_stochastic=True`` (then each batch's
randomness is drawn once when its product is built). BatchNorm in ``train()`` mode is deterministic
given the batch and is accepted (the curvature of the batch-statistics loss).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from curvnb.curvature.distributed import agree, all_reduce_sum, global_sum
from curvnb.curvature.linearize import linearize
from curvnb.curvature.params import (FunctionalModel, as_batches, batch_weights, check_deterministic, flatten,
                                     loss_reduction, scalar_loss)

KINDS = ("hessian", "ggn")
METHODS = ("auto", "reuse", "linearize", "rebuild")
#: ``method="auto"`` on convolutional models switches a batch from "reuse" to "linearize" after this
#: many products: tracing costs ≈20 gradients and saves ≈0.7 per product (benchmarks/curvature.py).
AUTO_LINEARIZE_AFTER = 50


def has_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` contains a convolution (any ``nn.Conv*``/``nn.ConvTranspose*``)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def default_method(model: nn.Module) -> str:
    """The method ``"auto"`` runs in the long run for a reusable Hessian operator: ``"linearize"``
    on models with convolutions (1.2 vs 1.8 gradients per product), ``"reuse"`` otherwise."""
    return "linearize" if has_convolutions(model) else "reuse"


class CurvatureOperator:
    """The P×P Hessian (``kind="hessian"``) or GGN (``kind="ggn"``) of the loss over ``data``.

    ``op @ v`` / ``op.matvec(v)`` for a flat vector ``v``; ``op.matmat(V)`` for ``V`` of shape (P, m).
    ``num_matvecs`` counts the products computed. With ``cache=True`` (default) what each batch's
    product reuses (see ``method`` in the module docstring) is kept in memory between products;
    ``cache=False`` keeps nothing (bounded memory for large iterables of batches, one-shot products).
    ``reduction`` overrides ``loss_fn.reduction``; ``allow_stochastic`` accepts Dropout in training
    mode; ``process_group`` makes ``data`` this rank's shard and all-reduces the products.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Any, *, kind: str = "hessian",
                 method: str = "auto", cache: bool = True, reduction: str | None = None,
                 allow_stochastic: bool = False, process_group: Any = None):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: allowed values are {', '.join(map(repr, KINDS))}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: allowed values are {', '.join(map(repr, METHODS))}")
        check_deterministic(model, allow_stochastic)
        self.fm = FunctionalModel(model)
        self.loss_fn = loss_fn
        self.reduction = loss_reduction(loss_fn, reduction)
        self.kind, self.cache, self.process_group = kind, cache, process_group
        self.requested_method = method
        #: products of a batch after which "auto" switches it to "linearize" (None: never)
        self.switch_after = None
        if method == "auto":
            if kind == "hessian" and cache and default_method(model) == "linearize":
                self.switch_after = AUTO_LINEARIZE_AFTER
            method = "reuse"
        self.method = method
        self.batches = [(x.to(self.fm.device), y.to(self.fm.device)) for x, y in as_batches(data)]
        local = sum(len(x) for x, _ in self.batches)
        self.num_local_examples = local
        self.num_examples = int(global_sum([float(local)], process_group, self.fm.device)[0])
        error = None
        try:
            self.weights = batch_weights(loss_fn, self.batches, self.reduction, self.num_examples,
                                         distributed=process_group is not None)
        except ValueError as exc:
            error = str(exc)
        agree(error, process_group, self.fm.device)  # every rank raises, none waits in a collective
        self.shape = (self.fm.num_params, self.fm.num_params)
        self.dtype, self.device = self.fm.dtype, self.fm.device
        self.num_matvecs = 0
        self._products: dict[int, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {}
        self._counts: dict[int, int] = {}

    # ---------------------------------------------------------------- per-batch products
    def _flat(self, tensors, like: torch.Tensor) -> torch.Tensor:
        """Flatten per-parameter results (None: zeros) to (P,) or, for a batch of vectors, (m, P)."""
        lead = like.shape[:-1]
        return torch.cat([(t if t is not None else p.new_zeros(lead + p.shape)).reshape(*lead, -1)
                          for t, p in zip(tensors, self.fm.params)], dim=-1)

    def _build(self, i: int, method: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function ``v (P,) -> (curvature of batch i) v``, with whatever it can reuse built once."""
        x, y = self.batches[i]
        fm, loss_fn = self.fm, self.loss_fn
        method = self.method if method is None else method
        if self.kind == "hessian":
            if method == "reuse":
                params = [p.detach().requires_grad_() for p in fm.params]
                with torch.enable_grad():
                    loss = fm.loss(loss_fn, x, y)(params)
                    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
                # parameters the loss does not depend on (unused ones, or through no differentiable
                # path) get zero rows
                live = [k for k, g in enumerate(grads) if g is not None and g.requires_grad]

                def product(v: torch.Tensor) -> torch.Tensor:
                    # v is (P,) or, for several vectors at once, (m, P) (autograd's vmap: is_grads_batched)
                    if not live:
                        return torch.zeros_like(v)
                    vs = fm.unflatten(v)
                    hv = torch.autograd.grad([grads[k] for k in live], params, [vs[k] for k in live],
                                             retain_graph=True, allow_unused=True, is_grads_batched=v.dim() == 2)
                    return self._flat(hv, v)
                return product
            g = self._gradient(x, y)
            if method == "linearize":
                try:
                    jvp_fn, _ = linearize(g, fm.params)
                except (RuntimeError, NotImplementedError) as exc:
                    # an op without a forward-mode rule: fall back to the reused double-backward graph
                    if self.requested_method == "linearize":
                        warnings.warn(f"linearizing the gradient failed ({exc}); using method='reuse'", stacklevel=3)
                    self.method, self.switch_after = "reuse", None
                    return self._build(i, "reuse")
                return lambda v: flatten(jvp_fn(fm.unflatten(v)))
            return lambda v: flatten(torch.func.jvp(g, (fm.params,), (fm.unflatten(v),))[1])

        # GGN: Jᵀ H_out J, with J the Jacobian of the outputs and H_out the loss Hessian in the outputs
        f = lambda p: fm(p, x)  # noqa: E731
        out, vjp_fn = torch.func.vjp(f, fm.params)
        out = out.detach()
        out_hvp = self._output_hvp(y, out)

        if method == "rebuild":
            def jac_vec(v):
                return torch.func.jvp(f, (fm.params,), (fm.unflatten(v),))[1]
        else:
            try:
                lin, _ = linearize(f, fm.params)
                jac_vec = lambda v: lin(fm.unflatten(v))  # noqa: E731
            except (RuntimeError, NotImplementedError):
                # no forward-mode rule for some op: J v as the vjp of the (linear) map u -> Jᵀu
                _, vjp2 = torch.func.vjp(vjp_fn, torch.zeros_like(out))
                jac_vec = lambda v: vjp2((fm.unflatten(v),))[0]  # noqa: E731 (vjp_fn returns a 1-tuple)

        def product(v: torch.Tensor) -> torch.Tensor:
            return flatten(vjp_fn(out_hvp(jac_vec(v)))[0])
        return product

    def _output_hvp(self, y: torch.Tensor, out: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``u -> H_out u``, the Hessian of the loss in the outputs ``out`` times ``u``, by reverse
        mode twice (the vjp of the loss's gradient; H_out is symmetric). Never forward mode: torch
        has no forward-mode rule for some losses (HuberLoss, SmoothL1Loss), raises on others
        (MSELoss with a mean: "ZeroTensors are immutable"), and crashes the interpreter when a
        trace runs forward mode through ``mse_loss``'s gradient."""
        grad_out = torch.func.grad(lambda o: scalar_loss(self.loss_fn(o, y)))
        _, pullback = torch.func.vjp(grad_out, out)
        return lambda u: pullback(u)[0]

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> Callable:
        """``params -> ∇ loss(params)`` of batch ``(x, y)``, written so that its forward-mode derivative
        (the Hessian product, traced by ``"linearize"``, re-run by ``"rebuild"``) runs forward mode
        through the network only.

        With ``g = Jᵀ c`` and ``c = ∇_out loss``, ``d g = (dJ)ᵀ c + Jᵀ H_out (J v)``: the network's
        pullback is differentiated in forward mode with a dual cotangent ``(c, H_out J v)``, and the
        loss's part ``H_out (J v)`` comes from :meth:`_output_hvp` (reverse mode on the outputs), for
        every loss, a plain function included: nothing has to be known about the loss beforehand.
        (A model whose output is not one tensor is differentiated through the loss as a whole.)"""
        fm, loss_fn = self.fm, self.loss_fn
        whole = torch.func.grad(fm.loss(loss_fn, x, y))

        def gradient(params):
            out, pullback = torch.func.vjp(lambda p: fm(p, x), params)
            if not isinstance(out, torch.Tensor):
                return whole(params)
            primal, jv = fwAD.unpack_dual(out)
            grad_out = torch.func.grad(lambda o: scalar_loss(loss_fn(o, y)))
            cot, out_pullback = torch.func.vjp(grad_out, primal)
            if jv is not None:  # a forward-mode pass: the cotangent's tangent is H_out J v
                cot = fwAD.make_dual(cot, out_pullback(jv)[0])
            return pullback(cot)[0]
        return gradient

    def _once(self, i: int, v: torch.Tensor) -> torch.Tensor:
        """The product of batch i with ``v`` keeping nothing: plain double backward (Hessian) or one
        forward pass carrying J v followed by one backward pass (GGN)."""
        x, y = self.batches[i]
        fm = self.fm
        params = [p.detach().requires_grad_() for p in fm.params]
        vs = fm.unflatten(v)
        if self.kind == "hessian":
            with torch.enable_grad():
                loss = fm.loss(self.loss_fn, x, y)(params)
                grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
                live = [k for k, g in enumerate(grads) if g is not None and g.requires_grad]
                if not live:
                    return torch.zeros_like(v)
                hv = torch.autograd.grad([grads[k] for k in live], params, [vs[k] for k in live], allow_unused=True)
            return self._flat(hv, v)
        try:
            with torch.enable_grad(), fwAD.dual_level():
                out = fm([fwAD.make_dual(p, t) for p, t in zip(params, vs)], x)
                primal, jv = fwAD.unpack_dual(out)
        except (RuntimeError, NotImplementedError):
            return self._build(i)(v)  # an op without a forward-mode rule: the traced path
        jv = torch.zeros_like(primal) if jv is None else jv.detach()
        u = self._output_hvp(y, primal.detach())(jv)
        if not primal.requires_grad:
            return torch.zeros_like(v)
        return self._flat(torch.autograd.grad(primal, params, u, allow_unused=True), v)

    def _product(self, i: int, count: int = 1) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
        """Batch i's product function and its method, for ``count`` more products."""
        if not self.cache:
            if self.method == "reuse":
                return (lambda v: self._once(i, v)), "once"
            return self._build(i), self.method
        done = self._counts.get(i, 0)
        if (i in self._products and self.switch_after is not None and self._products[i][1] == "reuse"
                and done >= self.switch_after):
            del self._products[i]          # free the gradient graph before tracing
            self.method = "linearize"
            self._products[i] = (self._build(i, "linearize"), self.method)
        if i not in self._products:
            self._products[i] = (self._build(i), self.method)
        self._counts[i] = done + count
        return self._products[i]

    # ---------------------------------------------------------------- public
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The product with one flat vector ``v`` of length P."""
        v = self.fm.check_vector(v)
        if v.dim() != 1:
            raise ValueError(f"matvec takes one flat vector, got shape {tuple(v.shape)}; use matmat")
        v = v.detach()
        total = torch.zeros_like(v)
        for i, w in enumerate(self.weights):
            total.add_(self._product(i)[0](v), alpha=w)
        self.num_matvecs += 1
        return all_reduce_sum(total, self.process_group).detach()

    def matmat(self, V: torch.Tensor, batched: bool | None = None) -> torch.Tensor:
        """The product with the columns of ``V`` (P, m).

        ``batched=True`` multiplies all columns in one vectorised pass (``vmap``; faster on GPUs),
        ``False`` loops over them (faster on CPUs); the default picks by device."""
        if V.dim() != 2 or V.shape[0] != self.shape[0]:
            raise ValueError(f"matmat takes a (P, m) matrix with P={self.shape[0]}, got {tuple(V.shape)}")
        if batched is None:
            batched = self.device.type != "cpu"
        if not batched or not self.cache:
            return torch.stack([self.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)
        Vt = self.fm.check_vector(V.T).detach().contiguous()
        total = torch.zeros_like(Vt)
        for i, w in enumerate(self.weights):
            f, method = self._product(i, V.shape[1])
            if not (self.kind == "hessian" and method == "reuse"):
                f = torch.func.vmap(f)
            total.add_(f(Vt), alpha=w)
        self.num_matvecs += V.shape[1]
        return all_reduce_sum(total, self.process_group).detach().T

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v) if v.dim() == 1 else self.matmat(v)

    def dense(self, chunk: int = 64) -> torch.Tensor:
        """The explicit P×P matrix (P products with unit vectors)."""
        P = self.shape[0]
        eye = torch.eye(P, dtype=self.dtype, device=self.device)
        return torch.cat([self.matmat(eye[:, j:j + chunk]) for j in range(0, P, chunk)], dim=1)


class MatrixOperator:
    """An explicit symmetric matrix with the operator interface (``matvec``, ``matmat``, ``shape``,
    ``dtype``, ``device``, ``num_matvecs``), for the solvers of :mod:`curvnb.curvature.spectra` on a
    known matrix (references, tests)."""

    def __init__(self, matrix: torch.Tensor):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.shape = tuple(matrix.shape)
        self.dtype, self.device = matrix.dtype, matrix.device
        self.num_matvecs = 0
        self.process_group = None

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.num_matvecs += 1
        return self.matrix @ v.to(self.dtype)

    def matmat(self, V: torch.Tensor, batched: bool | None = None) -> torch.Tensor:
        self.num_matvecs += V.shape[1]
        return self.matrix @ V.to(self.dtype)

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v) if v.dim() == 1 else self.matmat(v)


def hessian_operator(model: nn.Module, loss_fn: Callable, data: Any, **kwargs: Any) -> CurvatureOperator:
    """The Hessian of the loss as a reusable operator (build once, multiply many times)."""
    return CurvatureOperator(model, loss_fn, data, kind="hessian", **kwargs)


def ggn_operator(model: nn.Module, loss_fn: Callable, data: Any, **kwargs: Any) -> CurvatureOperator:
    """The generalized Gauss–Newton matrix Jᵀ H_out J as a reusable operator."""
    return CurvatureOperator(model, loss_fn, data, kind="ggn", **kwargs)


def hvp(model: nn.Module, loss_fn: Callable, data: Any, v: torch.Tensor, *, method: str = "auto",
        **kwargs: Any) -> torch.Tensor:
    """Hessian-vector product ``H v`` of the loss over ``data``; ``v`` and the result are flat (P,).

    One plain double backward pass per batch, nothing kept (``method="linearize"``/``"rebuild"``
    force those methods). For many products on the same data build :func:`hessian_operator` once.
    Keyword arguments (``reduction``, ``allow_stochastic``, ``process_group``) as for
    :class:`CurvatureOperator`."""
    return CurvatureOperator(model, loss_fn, data, kind="hessian", method=method, cache=False, **kwargs).matvec(v)


def ggn_vp(model: nn.Module, loss_fn: Callable, data: Any, v: torch.Tensor, *, method: str = "auto",
           **kwargs: Any) -> torch.Tensor:
    """Generalized Gauss–Newton-vector product ``G v = Jᵀ H_out J v``; ``v`` and the result are flat (P,).

    One forward pass carrying ``J v`` (forward-mode AD) and one backward pass per batch (≈2
    gradients), nothing kept. Keyword arguments as for :class:`CurvatureOperator`."""
    return CurvatureOperator(model, loss_fn, data, kind="ggn", method=method, cache=False, **kwargs).matvec(v)


def loss_and_grad(model: nn.Module, loss_fn: Callable, data: Any, *, reduction: str | None = None,
                  process_group: Any = None) -> tuple[float, torch.Tensor]:
    """The loss over ``data`` and its flat gradient (batches combined as in :class:`CurvatureOperator`).

    Stochastic modules are allowed here: with Dropout in training mode this is one stochastic gradient."""
    fm = FunctionalModel(model)
    r = loss_reduction(loss_fn, reduction)
    batches = [(x.to(fm.device), y.to(fm.device)) for x, y in as_batches(data)]
    n = int(global_sum([float(sum(len(x) for x, _ in batches))], process_group, fm.device)[0])
    error = None
    try:
        weights = batch_weights(loss_fn, batches, r, n, distributed=process_group is not None)
    except ValueError as exc:
        error = str(exc)
    agree(error, process_group, fm.device)
    total = torch.zeros(fm.num_params + 1, dtype=fm.dtype, device=fm.device)  # gradient, then the loss
    for (x, y), w in zip(batches, weights):
        g, loss = torch.func.grad_and_value(fm.loss(loss_fn, x, y))(fm.params)
        total[:-1] += flatten(g) * w
        total[-1] += loss.detach() * w
    all_reduce_sum(total, process_group)
    return float(total[-1]), total[:-1]


DEFAULT_MAX_PARAMS = 5000


def dense_hessian(model: nn.Module, loss_fn: Callable, data: Any, max_params: int = DEFAULT_MAX_PARAMS,
                  kind: str = "hessian", **kwargs: Any) -> torch.Tensor:
    """The explicit P×P Hessian (or GGN with ``kind="ggn"``) for small models.

    Keyword arguments as for :class:`CurvatureOperator`. Refuses when P exceeds ``max_params`` (raise it explicitly if you mean it: memory grows as P²)."""
    P = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if P > max_params:
        raise ValueError(f"the model has P={P} parameters > max_params={max_params}: a dense P×P matrix "
                         f"needs {P * P * 8 / 2**30:.1f} GiB in float64; pass max_params={P} to force it, "
                         f"or use hvp / hessian_eigenvalues")
    H = CurvatureOperator(model, loss_fn, data, kind=kind, **kwargs).dense()
    return 0.5 * (H + H.T)  # symmetric up to rounding; make it exactly so
