"""Issue 23, item 1: every public curvature entry point on every case of the zoo (tests/curvature_zoo.py).

One test per case runs every entry point, for the Hessian and the GGN, and reports each failure by
the entry point's name (``hessian-op-linearize-cache: product 3 ...``). Each result is within 1e-10
relative error of a dense reverse-mode reference (itself checked against central finite differences
first), or a refusal whose ValueError matches the case's ``refusal`` pattern.

Work is shared: each (kind, method, cache) operator is built once and every entry point that takes
an operator runs on that instance; the references are computed once per case; each linearised
program is traced once per (case, program, batch, primal values) and shared by the entry points that
build it from those inputs (:class:`TraceMemo`). The one-shot functions (``hvp``/``ggn_vp`` with
each method) build the same product as an operator with ``cache=False``, so they must equal its
product bitwise. The ``"auto"`` operator with a cache is applied ``REPEATS`` = 60 times
to one vector where it has a switch (the Hessian of a conv net: at 50 products); ``"auto"`` then changes computation
(``"reuse"`` to ``"linearize"``), whose products differ by rounding (~1e-16 relative), so products
must be bitwise identical (``torch.equal``) within each phase and within 1e-10 of the reference
across the switch. Other cached operators get ``FEW`` = 3 identical products (they have one phase);
without a cache one product, checked bitwise against the one-shot function.
Hutchinson and SLQ run with few probes, compared with the same seeded probes applied to the dense
reference (:class:`MatrixOperator`): the identity holds probe by probe, so 4 probes test it as well
as 100. Eigenvalues at ``tol=1e-10`` against numpy's ``eigvalsh``.
"""
from __future__ import annotations

import traceback
from typing import Callable

import numpy as np
import pytest
import torch

from curvature_zoo import CASES, DT, Case, finite_difference_check, reference
from curvnb.curvature import (MatrixOperator, dense_hessian, density_from_nodes, ggn_operator, ggn_vp,
                              hessian_density, hessian_eigenvalues, hessian_operator, hessian_trace, hvp,
                              loss_and_grad, operator_eigenvalues, operator_trace, slq_nodes)
from curvnb.curvature import operators
from curvnb.curvature.operators import AUTO_LINEARIZE_AFTER, METHODS

TOL = 1e-10
REPEATS = 60
FEW = 3
assert REPEATS > AUTO_LINEARIZE_AFTER
KINDS = ("hessian", "ggn")
K = 3
SAMPLES, RUNS, STEPS = 4, 2, 5
#: ARPACK cannot run on an exactly zero operator: backend="scipy" refuses with this message there.
ARPACK_REFUSAL = r"ARPACK \(backend='scipy'\) failed: .*Krylov space closes before k values"


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest


# ------------------------------------------------------------------------------ one trace per input
def _closure_tensors(func: Callable, depth: int = 2) -> list[torch.Tensor]:
    """The tensors ``func`` closes over (the batch), looking ``depth`` levels into nested functions."""
    found = []
    for cell in getattr(func, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif callable(value) and depth > 0:
            found += _closure_tensors(value, depth - 1)
    return found


def _fingerprint(tensors) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.detach().cpu().numpy().tobytes()) for t in tensors)


class TraceMemo:
    """Tracing a linearised program costs 0.1-0.8 s (make_fx, twice) and a case has ~20 entry points
    that each build one per batch from the same inputs: each (case, program, batch, primal values) is
    traced once and its program shared. A key holds everything the trace depends on — the case (model
    and loss, rebuilt identically by ``case.build()``), the closure's code and the values of its
    tensors (the batch) and of the primals — so a different input is a miss, never a stale hit. That
    tracing twice gives the same program bit for bit is tested in tests/test_curvature_defects.py."""

    def __init__(self, real: Callable):
        self.real, self.case, self.programs = real, None, {}

    def __call__(self, func: Callable, *primals, **kwargs):
        if self.case is None:
            return self.real(func, *primals, **kwargs)
        flat = [t for p in primals for t in (p if isinstance(p, (list, tuple)) else [p])]
        key = (self.case, func.__code__, _fingerprint(_closure_tensors(func)), _fingerprint(flat),
               tuple(sorted(kwargs.items())))
        if key not in self.programs:
            self.programs[key] = self.real(func, *primals, **kwargs)
        return self.programs[key]


@pytest.fixture(autouse=True)
def trace_memo(monkeypatch):
    memo = TraceMemo(operators.linearize)
    monkeypatch.setattr(operators, "linearize", memo)
    return memo


# ------------------------------------------------------------------------------ helpers
def _vec(P: int, seed: int) -> torch.Tensor:
    return torch.randn(P, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _scale(case: Case) -> float:
    ref = reference(case)
    return max(float(ref.hessian.norm()), float(ref.ggn.norm()))


def assert_close(got: torch.Tensor, want: torch.Tensor, case: Case, what: str) -> None:
    """Relative error ≤ TOL; the denominator never below 1e-3 of the case's curvature scale (a product
    that is nearly zero, e.g. of an exactly zero GGN, is compared absolutely)."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    denom = max(float(want.norm()), 1e-3 * _scale(case), 1e-300)
    err = float((got - want).norm()) / denom
    assert err <= TOL, f"{what}: relative error {err:.2e} > {TOL:g}"


def _matrix(case: Case, kind: str) -> torch.Tensor:
    ref = reference(case)
    return ref.hessian if kind == "hessian" else ref.ggn


class Entries:
    """Runs entry points one by one and collects failures by name (one test reports them all)."""

    def __init__(self, case: Case):
        self.case, self.failures, self.ran = case, [], []

    def run(self, entry: str, fn: Callable[[], None], refusal: str | None = None) -> None:
        """Run ``fn``; with a refusal pattern (the case's, or ``refusal``) require a matching ValueError."""
        self.ran.append(entry)
        pattern = refusal or self.case.refusal
        try:
            if pattern:
                with pytest.raises(ValueError, match=pattern):
                    fn()
            else:
                fn()
        except Exception as exc:  # noqa: BLE001 (AssertionError and errors alike, reported by entry)
            detail = str(exc) if isinstance(exc, AssertionError) else traceback.format_exc(limit=-3)
            self.failures.append(f"{entry}: {type(exc).__name__}: {detail}")

    def check(self) -> None:
        assert not self.failures, f"{len(self.failures)} of {len(self.ran)} entry points failed on " \
                                  f"{self.case.name}:\n" + "\n".join(self.failures)


# ------------------------------------------------------------------------------ entry points of one kind
def _operators(case: Case, kind: str, e: Entries) -> dict:
    """Build every (method, cache) operator once; check products, purity, matmat and the one-shot
    functions against them. Returns the operators built (for the solvers below)."""
    model, loss_fn, data, kw = case.build()
    make = hessian_operator if kind == "hessian" else ggn_operator
    one_shot = hvp if kind == "hessian" else ggn_vp
    ops: dict = {}
    M = _matrix(case, kind) if case.refusal is None else None
    P = sum(p.numel() for p in model.parameters() if p.requires_grad)
    v = _vec(P, 0)
    for method in METHODS:
        for cached in (True, False):
            name = f"{kind}-op-{method}-{'cache' if cached else 'nocache'}"

            def check_op(method=method, cached=cached, name=name):
                op = make(model, loss_fn, data, method=method, cache=cached, **kw)
                ops[(method, cached)] = op
                assert op.shape == (P, P)
                first = op @ v
                assert_close(first, M @ v, case, "product 1")
                ops[(method, cached, "product")] = first
                repeats = (REPEATS if op.switch_after is not None else FEW) if cached else 1
                # "auto" switches a conv net's Hessian from "reuse" to "linearize" after
                # AUTO_LINEARIZE_AFTER products: two computations, two roundings, so products are
                # identical within each phase and the first one after the switch is exact
                switch = op.switch_after if op.switch_after is not None else repeats + 1
                start = 1
                for i in range(2, repeats + 1):
                    again = op @ v
                    if i == switch + 1:
                        assert_close(again, M @ v, case, f"product {i}, the first after the switch")
                        first, start = again, i
                    assert torch.equal(again, first), f"product {i} differs from product {start} by " \
                        f"{float((again - first).norm() / first.norm()):.2e} (relative)"
                if cached:
                    V = torch.stack([_vec(P, s) for s in (1, 2)], dim=1)
                    assert_close(op.matmat(V, batched=False), M @ V, case, "matmat looped")
                    assert_close(op.matmat(V, batched=True), M @ V, case, "matmat vmapped")
                    assert_close(op @ V, M @ V, case, "op @ V")
                assert op.num_matvecs == repeats + (6 if cached else 0)
            e.run(name, check_op)

        def check_one_shot(method=method):
            got = one_shot(model, loss_fn, data, v, method=method, **kw)
            assert_close(got, M @ v, case, one_shot.__name__)
            op_product = ops.get((method, False, "product"))
            if op_product is not None:  # the same path as the operator without a cache: bitwise equal
                assert torch.equal(got, op_product), "differs from the cache=False operator's product"
        e.run(f"{kind}-vp-{method}", check_one_shot)
    return ops


def _dense(case: Case, kind: str, e: Entries) -> None:
    def check():
        model, loss_fn, data, kw = case.build()
        D = dense_hessian(model, loss_fn, data, kind=kind, **kw)
        assert torch.equal(D, D.T)
        assert_close(D, _matrix(case, kind), case, "dense matrix")
    e.run(f"{kind}-dense", check)


def _eigenvalues(case: Case, kind: str, e: Entries, op) -> None:
    """k = 3 eigenvalues at tol = 1e-10: the top 3 by ``hessian_eigenvalues`` (default block, with
    eigenvectors, its own operator); on the shared ``"auto"`` operator with ``operator_eigenvalues``
    the bottom 3 (single-vector Lanczos) and the 3 of largest magnitude (ARPACK backend)."""
    model, loss_fn, data, kw = case.build()
    if case.refusal:  # no operator was built: the one-shot function with each variant's settings
        e.run(f"{kind}-eig-top3", lambda: hessian_eigenvalues(model, loss_fn, data, k=K, tol=TOL, kind=kind, **kw))
        e.run(f"{kind}-eig-bottom3-single", lambda: hessian_eigenvalues(model, loss_fn, data, k=K, which="SA",
                                                                        tol=TOL, kind=kind, block_size=1, **kw))
        e.run(f"{kind}-eig-scipy-lm3", lambda: hessian_eigenvalues(model, loss_fn, data, k=K, which="LM", tol=TOL,
                                                                   kind=kind, backend="scipy", **kw))
        return
    calls = {
        "top3": lambda: hessian_eigenvalues(model, loss_fn, data, k=K, which="LA", tol=TOL, kind=kind,
                                            return_eigenvectors=True, **kw),
        "bottom3-single": lambda: operator_eigenvalues(op, k=K, which="SA", tol=TOL, block_size=1),
        "scipy-lm3": lambda: operator_eigenvalues(op, k=K, which="LM", tol=TOL, backend="scipy"),
    }
    for variant, call in calls.items():
        entry = f"{kind}-eig-{variant}"
        M = _matrix(case, kind)
        lam = np.linalg.eigvalsh(M.numpy())
        if variant == "scipy-lm3" and np.abs(lam).max() == 0:
            e.run(entry, call, refusal=ARPACK_REFUSAL)
            continue

        def check(variant=variant, call=call):
            want = {"top3": np.sort(lam)[::-1][:K], "bottom3-single": np.sort(lam)[:K],
                    "scipy-lm3": lam[np.argsort(-np.abs(lam))][:K]}[variant]
            res = call()
            got = res.eigenvalues.numpy()
            assert len(got) == K, f"{len(got)} eigenvalues for k={K} (converged={res.converged})"
            norm = float(np.abs(lam).max())
            err = np.abs(np.sort(got) - np.sort(want)).max() / max(norm, 1e-300)
            assert err <= TOL or norm == 0 and np.abs(got).max() == 0, \
                f"eigenvalues {got} off by {err:.2e} of ‖M‖ (want {want})"
            assert res.converged
            if res.eigenvectors is not None:
                Y = res.eigenvectors
                assert float((M @ Y - Y * res.eigenvalues).norm()) <= 10 * TOL * max(norm, 1e-300) * K
        e.run(entry, check)


def _stochastic(case: Case, kind: str, e: Entries, op) -> None:
    """Hutchinson (``hessian_trace``; ``operator_trace`` with its samples on the shared operator) and
    SLQ (``slq_nodes`` on the shared operator, ``hessian_density``) against the same seeded probes on
    the dense reference."""
    model, loss_fn, data, kw = case.build()
    if case.refusal:
        e.run(f"{kind}-trace", lambda: hessian_trace(model, loss_fn, data, num_samples=SAMPLES, kind=kind, **kw))
        e.run(f"{kind}-slq", lambda: hessian_density(model, loss_fn, data, num_runs=RUNS, num_steps=STEPS,
                                                     kind=kind, **kw))
        return
    M = _matrix(case, kind)
    dense = MatrixOperator(M)
    abs_scale = max(float(M.abs().sum()), 1e-300)  # the largest possible |zᵀMz| for a Rademacher z

    def trace():
        want = operator_trace(dense, SAMPLES, seed=7, return_samples=True)
        est, se = hessian_trace(model, loss_fn, data, num_samples=SAMPLES, seed=7, kind=kind, **kw)
        _, _, samples = operator_trace(op, SAMPLES, seed=7, return_samples=True)
        assert np.abs(samples - want[2]).max() <= TOL * abs_scale, "operator_trace samples"
        assert abs(est - want[0]) <= TOL * abs_scale, "hessian_trace estimate"
        assert abs(se - want[1]) <= TOL * abs_scale, "hessian_trace standard error"
    e.run(f"{kind}-trace", trace)

    def slq():
        norm = float(torch.linalg.matrix_norm(M, ord=2))
        nodes_want, weights_want = slq_nodes(dense, num_runs=RUNS, num_steps=STEPS, seed=3)
        nodes, weights = slq_nodes(op, num_runs=RUNS, num_steps=STEPS, seed=3)
        assert nodes.shape == nodes_want.shape
        assert np.abs(nodes - nodes_want).max() <= TOL * max(norm, 1e-300), "slq_nodes nodes"
        assert np.abs(weights - weights_want).max() <= TOL, "slq_nodes weights"
        sigma = 0.1 * max(norm, 1e-3)
        grid = np.linspace(-1.2 * norm - 3 * sigma, 1.2 * norm + 3 * sigma, 101)
        _, dens_want = density_from_nodes(nodes_want, weights_want, grid=grid, sigma=sigma)
        _, dens = hessian_density(model, loss_fn, data, num_runs=RUNS, num_steps=STEPS, grid=grid, sigma=sigma,
                                  seed=3, kind=kind, **kw)
        assert np.abs(dens - dens_want).max() <= TOL * dens_want.max() * max(norm, 1e-3) / sigma, "hessian_density"
    e.run(f"{kind}-slq", slq)


# ------------------------------------------------------------------------------ the test
ENTRIES_PER_KIND = len(METHODS) * 3 + 1 + 3 + 2   # operators (cache on/off) and one-shot, dense, eigen, trace/SLQ


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_case(case: Case, trace_memo: TraceMemo):
    """Every public entry point on ``case``: the reference first (finite differences), then
    ``loss_and_grad`` and, for the Hessian and the GGN, every operator, one-shot product, dense matrix,
    eigenvalue solver and stochastic estimator. Failures are reported together, by entry point."""
    e = Entries(case)
    trace_memo.case = case.name
    if case.refusal is None:
        errors = finite_difference_check(case)
        assert errors["hessian_asymmetry"] < 1e-13, errors
        for name in ("grad", "hessian", "ggn"):
            assert errors[name] < 1e-6, f"reference {name} vs finite differences: {errors}"

    def grad():
        model, loss_fn, data, kw = case.build()
        loss, g = loss_and_grad(model, loss_fn, data, **kw)
        ref = reference(case)
        assert abs(loss - ref.loss) <= TOL * abs(ref.loss), f"loss {loss} != {ref.loss}"
        assert_close(g, ref.grad, case, "gradient")
    e.run("loss_and_grad", grad)
    for kind in KINDS:
        ops = _operators(case, kind, e)
        _dense(case, kind, e)
        op = ops.get(("auto", True))  # after its REPEATS products: past the switch where there is one
        _eigenvalues(case, kind, e, op)
        _stochastic(case, kind, e, op)
    assert len(e.ran) == 1 + 2 * ENTRIES_PER_KIND, e.ran
    e.check()

