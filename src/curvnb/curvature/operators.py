"""Hessian- and Gauss–Newton-vector products on the flat parameter vector.

For a fixed set of batches the gradient's computation graph is built once and reused: each
Hessian-vector product is then one backward pass through the graph of the gradient (a reused
vector–Jacobian product of ``grad``), which costs ≈1.5 gradients instead of ≈3 when the graph is
rebuilt for every vector. ``method="linearize"`` uses ``torch.func.linearize`` instead (one traced
forward-mode pass per product), ``method="rebuild"`` rebuilds the graph every time (the baseline).
Iterable data are accumulated exactly: the loss over several batches is the batch-size-weighted
mean of the batch losses, so products are weighted by ``n_b / N``.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn

from curvnb.curvature.params import FunctionalModel, as_batches, flatten

KINDS = ("hessian", "ggn")
METHODS = ("reuse", "linearize", "rebuild")


class CurvatureOperator:
    """The P×P Hessian (``kind="hessian"``) or GGN (``kind="ggn"``) of the mean loss over ``data``.

    ``op @ v`` / ``op.matvec(v)`` for a flat vector ``v``; ``op.matmat(V)`` for ``V`` of shape (P, m).
    ``num_matvecs`` counts the products computed. With ``cache=True`` (default) the per-batch graphs
    are kept in memory between products (fast); ``cache=False`` rebuilds them (bounded memory for
    large iterables of batches).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Any, *, kind: str = "hessian",
                 method: str = "reuse", cache: bool = True):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: allowed values are {', '.join(map(repr, KINDS))}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: allowed values are {', '.join(map(repr, METHODS))}")
        self.fm = FunctionalModel(model)
        self.loss_fn = loss_fn
        self.kind, self.method, self.cache = kind, method, cache
        self.batches = [(x.to(self.fm.device), y.to(self.fm.device)) for x, y in as_batches(data)]
        n = sum(len(x) for x, _ in self.batches)
        self.num_examples = n
        self.weights = [len(x) / n for x, _ in self.batches]
        self.shape = (self.fm.num_params, self.fm.num_params)
        self.dtype, self.device = self.fm.dtype, self.fm.device
        self.num_matvecs = 0
        self._products: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}

    # ---------------------------------------------------------------- per-batch products
    def _build(self, i: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function ``v (P,) -> (curvature of batch i) v``, with whatever it can reuse built once."""
        x, y = self.batches[i]
        fm, loss_fn = self.fm, self.loss_fn
        if self.kind == "hessian":
            if self.method == "reuse":
                params = [p.detach().requires_grad_() for p in fm.params]
                with torch.enable_grad():
                    loss = loss_fn(fm(params, x), y)
                    grads = torch.autograd.grad(loss, params, create_graph=True)
                # parameters the loss does not depend on through a differentiable path get zeros
                live = [k for k, g in enumerate(grads) if g.requires_grad]

                def product(v: torch.Tensor) -> torch.Tensor:
                    # v is (P,) or, for several vectors at once, (m, P) (autograd's vmap: is_grads_batched)
                    batched = v.dim() == 2
                    vs = fm.unflatten(v)
                    out = [torch.zeros_like(t) for t in vs]
                    if live:
                        hv = torch.autograd.grad([grads[k] for k in live], params, [vs[k] for k in live],
                                                 retain_graph=True, allow_unused=True, is_grads_batched=batched)
                        out = [h if h is not None else o for h, o in zip(hv, out)]
                    return torch.cat([t.reshape(len(v), -1) for t in out], 1) if batched else flatten(out)
                return product
            g = torch.func.grad(fm.loss(loss_fn, x, y))
            if self.method == "linearize":
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # fx const-folding chatter
                        _, jvp_fn = torch.func.linearize(g, fm.params)
                except (RuntimeError, NotImplementedError) as exc:
                    # an op without a forward-mode rule: fall back to the reused double-backward graph
                    warnings.warn(f"torch.func.linearize failed ({exc}); using method='reuse'", stacklevel=3)
                    self.method = "reuse"
                    return self._build(i)
                return lambda v: flatten(jvp_fn(fm.unflatten(v)))
            return lambda v: flatten(torch.func.jvp(g, (fm.params,), (fm.unflatten(v),))[1])

        # GGN: Jᵀ H_out J, with J the Jacobian of the outputs and H_out the loss Hessian in the outputs
        f = lambda p: fm(p, x)  # noqa: E731
        out, vjp_fn = torch.func.vjp(f, fm.params)
        out = out.detach()
        grad_out = torch.func.grad(lambda o: loss_fn(o, y))

        def out_hvp(u: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(grad_out, (out,), (u,))[1]

        if self.method == "rebuild":
            def jac_vec(v):
                return torch.func.jvp(f, (fm.params,), (fm.unflatten(v),))[1]
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    _, lin = torch.func.linearize(f, fm.params)
                jac_vec = lambda v: lin(fm.unflatten(v))  # noqa: E731
            except (RuntimeError, NotImplementedError):
                # no forward-mode rule for some op: J v as the vjp of the (linear) map u -> Jᵀu
                _, vjp2 = torch.func.vjp(vjp_fn, torch.zeros_like(out))
                jac_vec = lambda v: vjp2(fm.unflatten(v))[0]  # noqa: E731

        def product(v: torch.Tensor) -> torch.Tensor:
            return flatten(vjp_fn(out_hvp(jac_vec(v)))[0])
        return product

    def _product(self, i: int) -> Callable[[torch.Tensor], torch.Tensor]:
        if not self.cache:
            return self._build(i)
        if i not in self._products:
            self._products[i] = self._build(i)
        return self._products[i]

    # ---------------------------------------------------------------- public
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The product with one flat vector ``v`` of length P."""
        v = self.fm.check_vector(v)
        if v.dim() != 1:
            raise ValueError(f"matvec takes one flat vector, got shape {tuple(v.shape)}; use matmat")
        v = v.detach()
        total = None
        for i, w in enumerate(self.weights):
            hv = self._product(i)(v)
            total = hv * w if total is None else total.add_(hv, alpha=w)
        self.num_matvecs += 1
        return total.detach()

    def matmat(self, V: torch.Tensor, batched: bool | None = None) -> torch.Tensor:
        """The product with the columns of ``V`` (P, m).

        ``batched=True`` multiplies all columns in one vectorised pass (``vmap``; faster on GPUs),
        ``False`` loops over them (faster on CPUs); the default picks by device."""
        if V.dim() != 2 or V.shape[0] != self.shape[0]:
            raise ValueError(f"matmat takes a (P, m) matrix with P={self.shape[0]}, got {tuple(V.shape)}")
        if batched is None:
            batched = self.device.type != "cpu"
        if not batched:
            return torch.stack([self.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)
        Vt = self.fm.check_vector(V.T).detach().contiguous()
        total = None
        for i, w in enumerate(self.weights):
            f = self._product(i)
            if not (self.kind == "hessian" and self.method == "reuse"):
                f = torch.func.vmap(f)
            hv = f(Vt)
            total = hv * w if total is None else total.add_(hv, alpha=w)
        self.num_matvecs += V.shape[1]
        return total.detach().T

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v) if v.dim() == 1 else self.matmat(v)

    def dense(self, chunk: int = 64) -> torch.Tensor:
        """The explicit P×P matrix (P products with unit vectors)."""
        P = self.shape[0]
        eye = torch.eye(P, dtype=self.dtype, device=self.device)
        return torch.cat([self.matmat(eye[:, j:j + chunk]) for j in range(0, P, chunk)], dim=1)


def hessian_operator(model: nn.Module, loss_fn: Callable, data: Any, **kwargs: Any) -> CurvatureOperator:
    """The Hessian of the mean loss as a reusable operator (build once, multiply many times)."""
    return CurvatureOperator(model, loss_fn, data, kind="hessian", **kwargs)


def ggn_operator(model: nn.Module, loss_fn: Callable, data: Any, **kwargs: Any) -> CurvatureOperator:
    """The generalized Gauss–Newton matrix Jᵀ H_out J as a reusable operator."""
    return CurvatureOperator(model, loss_fn, data, kind="ggn", **kwargs)


def hvp(model: nn.Module, loss_fn: Callable, data: Any, v: torch.Tensor, *, method: str = "reuse") -> torch.Tensor:
    """Hessian-vector product ``H v`` of the mean loss over ``data``; ``v`` and the result are flat (P,).

    For many products on the same data build :func:`hessian_operator` once instead."""
    return CurvatureOperator(model, loss_fn, data, kind="hessian", method=method, cache=False).matvec(v)


def ggn_vp(model: nn.Module, loss_fn: Callable, data: Any, v: torch.Tensor) -> torch.Tensor:
    """Generalized Gauss–Newton-vector product ``G v = Jᵀ H_out J v``; ``v`` and the result are flat (P,)."""
    return CurvatureOperator(model, loss_fn, data, kind="ggn", cache=False).matvec(v)


def loss_and_grad(model: nn.Module, loss_fn: Callable, data: Any) -> tuple[float, torch.Tensor]:
    """The mean loss over ``data`` and its flat gradient (batches weighted by size)."""
    fm = FunctionalModel(model)
    batches = as_batches(data)
    n = sum(len(x) for x, _ in batches)
    total_loss, total_grad = 0.0, torch.zeros(fm.num_params, dtype=fm.dtype, device=fm.device)
    for x, y in batches:
        x, y = x.to(fm.device), y.to(fm.device)
        g, loss = torch.func.grad_and_value(fm.loss(loss_fn, x, y))(fm.params)
        total_loss += float(loss) * len(x) / n
        total_grad += flatten(g) * (len(x) / n)
    return total_loss, total_grad


DEFAULT_MAX_PARAMS = 5000


def dense_hessian(model: nn.Module, loss_fn: Callable, data: Any, max_params: int = DEFAULT_MAX_PARAMS,
                  kind: str = "hessian") -> torch.Tensor:
    """The explicit P×P Hessian (or GGN with ``kind="ggn"``) for small models.

    Refuses when P exceeds ``max_params`` (raise it explicitly if you mean it: memory grows as P²)."""
    P = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if P > max_params:
        raise ValueError(f"the model has P={P} parameters > max_params={max_params}: a dense P×P matrix "
                         f"needs {P * P * 8 / 2**30:.1f} GiB in float64; pass max_params={P} to force it, "
                         f"or use hvp / hessian_eigenvalues")
    H = CurvatureOperator(model, loss_fn, data, kind=kind).dense()
    return 0.5 * (H + H.T)  # symmetric up to rounding; make it exactly so
