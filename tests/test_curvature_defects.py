"""Regression tests for the six defects of issue 23, in float64 against dense reverse-mode references
(``torch.autograd.functional``): impure traced products, an interpreter crash with ``MSELoss``, the GGN
on regression losses, unused parameters, Lanczos closing early, and plain losses' reductions."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from curvnb.curvature import (CurvatureOperator, MatrixOperator, dense_hessian, ggn_operator, ggn_vp,
                              hessian_eigenvalues, hessian_operator, hessian_trace, hvp, operator_eigenvalues)

DT = torch.float64
REPEATS = 60  # more than AUTO_LINEARIZE_AFTER (50): "auto" switches to the traced program on the way
FEW = 5      # the old traced program drifted from the 2nd product on (3e-16, 7e-3, 0.13, 1.3)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest


def small_cnn() -> nn.Module:
    """P = 20 + 38 + 27 = 85 on 6×6 images (more than 50: "auto" passes its switch in a dense matrix)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 3), nn.Flatten(), nn.Linear(8, 3)).to(DT)


def small_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)


def inputs(n: int = 10, image: bool = False, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g, dtype=DT) if image else torch.randn(n, 5, generator=g, dtype=DT)


def targets(n: int = 10, kind: str = "real", seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "class":
        return torch.randint(0, 3, (n,), generator=g)
    if kind == "prob":
        return torch.rand(n, 3, generator=g, dtype=DT)
    return torch.randn(n, 3, generator=g, dtype=DT)


def P(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def vec(model: nn.Module, seed: int = 3) -> torch.Tensor:
    return torch.randn(P(model), dtype=DT, generator=torch.Generator().manual_seed(seed))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _functional(model: nn.Module, x: torch.Tensor):
    """``theta -> model(x)`` on the flat trainable parameters (buffers copied, unused ones allowed)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for _, p in named]

    def f(theta):
        state = {n: t.view(p.shape) for (n, p), t in zip(named, torch.split(theta, sizes))}
        state.update({n: b.clone() for n, b in model.named_buffers()})
        return torch.func.functional_call(model, state, (x,), strict=False)
    return f, torch.cat([p.detach().reshape(-1) for _, p in named])


def reference_hessian(model, loss, x, y) -> torch.Tensor:
    f, theta = _functional(model, x)
    return torch.autograd.functional.hessian(lambda t: loss(f(t), y), theta)


def reference_ggn(model, loss, x, y) -> torch.Tensor:
    f, theta = _functional(model, x)
    out = f(theta).detach()
    J = torch.autograd.functional.jacobian(f, theta).reshape(out.numel(), -1)
    H_out = torch.autograd.functional.hessian(lambda o: loss(o.view_as(out), y), out.reshape(-1))
    return J.T @ H_out @ J


def assert_pure_and_exact(op, v, expected, repeats=REPEATS):
    """``repeats`` products with the same ``v``: all bit-identical, and exact."""
    first = op @ v
    assert rel(first, expected) < 1e-10
    for _ in range(repeats - 1):
        assert torch.equal(op @ v, first)


# ------------------------------------------------------------------- 1. traced programs are pure
def test_1_traced_linearisation_is_pure_on_a_conv_net_with_bce_with_logits():
    # torch's BCEWithLogits kernel runs exp_, add_, log_ in place; the old trace folded those tensors
    # into constants and wrote into them on every product (relative errors 3e-16, 7e-3, 0.13, 1.3, ...)
    model, x, y, loss = small_cnn(), inputs(n=4, image=True), targets(n=4, kind="prob"), nn.BCEWithLogitsLoss()
    H = reference_hessian(model, loss, x, y)
    v = vec(model)
    assert_pure_and_exact(CurvatureOperator(model, loss, (x, y), method="linearize"), v, H @ v, repeats=FEW)
    # tracing is deterministic: two traces of the same program give the same product, bit for bit
    assert torch.equal(hvp(model, loss, (x, y), v, method="linearize"), hvp(model, loss, (x, y), v, method="linearize"))
    # "auto": double backward for 50 products, then the traced program; each is pure (the two
    # differ by rounding, so the products are identical within each phase)
    auto = CurvatureOperator(model, loss, (x, y))
    products = [auto @ v for _ in range(REPEATS)]
    assert auto.method == "linearize" and all(rel(p, H @ v) < 1e-10 for p in products)
    switch = auto.switch_after
    assert all(torch.equal(p, products[0]) for p in products[:switch])
    assert all(torch.equal(p, products[switch]) for p in products[switch:])
    dense = dense_hessian(model, loss, (x, y))
    assert torch.isfinite(dense).all() and rel(dense, H) < 1e-10
    # Hutchinson on the traced program (by default it got there after 50 of its 100 probes: (nan, nan)),
    # against the same probes on H
    Z = (torch.randint(0, 2, (FEW, P(model)), generator=torch.Generator().manual_seed(0)) * 2 - 1).to(DT).T
    est, _ = hessian_trace(model, loss, (x, y), num_samples=FEW, seed=0, method="linearize")
    assert np.isfinite(est) and abs(est - float((Z * (H @ Z)).sum(0).mean())) <= 1e-10 * float(H.abs().sum())


def test_1_ggn_default_path_is_pure_with_in_place_ops_on_data_only_tensors():
    class DataInPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(5, 6), nn.Linear(6, 3)

        def forward(self, x):
            s = x.abs()
            s.add_(1.0)
            s.log_()   # in place, on tensors that depend on the data only
            return self.l2(torch.tanh(self.l1(x * s)))

    torch.manual_seed(0)
    model, x, y, loss = DataInPlace().to(DT), inputs(), targets(kind="class"), nn.CrossEntropyLoss()
    v = vec(model)
    G, H = reference_ggn(model, loss, x, y), reference_hessian(model, loss, x, y)
    assert_pure_and_exact(ggn_operator(model, loss, (x, y)), v, G @ v, repeats=FEW)
    assert_pure_and_exact(CurvatureOperator(model, loss, (x, y), method="linearize"), v, H @ v, repeats=FEW)
    # tracing is deterministic: two traces of the same program give the same product, bit for bit
    assert torch.equal(hvp(model, loss, (x, y), v, method="linearize"), hvp(model, loss, (x, y), v, method="linearize"))


# ------------------------------------------------------------------- 2. no crash with MSELoss
def test_2_mse_loss_on_the_traced_path_does_not_crash_the_interpreter():
    # the old traced path ran forward mode through mse_loss's gradient inside make_fx: SIGSEGV (mean
    # or sum). Run in a subprocess, so that a crash fails this test instead of killing pytest.
    script = textwrap.dedent("""
        import torch
        from torch import nn
        from curvnb.curvature import CurvatureOperator, dense_hessian, hvp
        torch.manual_seed(0)
        DT = torch.float64
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3)).to(DT)  # P = 77
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(4, 1, 5, 5, generator=g, dtype=DT), torch.randn(4, 3, generator=g, dtype=DT)
        for reduction in ("mean", "sum"):
            loss = nn.MSELoss(reduction=reduction)
            names = [n for n, _ in model.named_parameters()]
            sizes = [p.numel() for p in model.parameters()]
            def f(theta):
                state = {n: t.view(p.shape) for n, t, p in zip(names, torch.split(theta, sizes), model.parameters())}
                return loss(torch.func.functional_call(model, state, (x,)), y)
            H = torch.autograd.functional.hessian(f, torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
            v = torch.randn(H.shape[0], dtype=DT, generator=g)
            for method in ("linearize", "rebuild"):
                hv = CurvatureOperator(model, loss, (x, y), method=method) @ v
                assert float((hv - H @ v).norm() / (H @ v).norm()) < 1e-10, (reduction, method)
            assert float((hvp(model, loss, (x, y), v, method="rebuild") - H @ v).norm() / (H @ v).norm()) < 1e-10
            D = dense_hessian(model, loss, (x, y))  # "auto" passes its switch to the traced program
            assert float((D - H).norm() / H.norm()) < 1e-10, reduction
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-2000:])


# ------------------------------------------------------------------- 3. the GGN on every loss
@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.MSELoss(reduction="sum"), nn.HuberLoss(), nn.SmoothL1Loss(beta=0.5)],
                         ids=["mse-mean", "mse-sum", "huber", "smooth-l1"])
def test_3_ggn_and_hessian_on_regression_losses(loss):
    # MSELoss(mean) raised "ZeroTensors are immutable" and HuberLoss NotImplementedError (no
    # forward-mode rule) in every GGN entry point; the loss's second derivative is now reverse mode
    model, x = small_mlp(), inputs()
    y = 2 * targets()  # residuals on both sides of Huber's threshold
    G, H = reference_ggn(model, loss, x, y), reference_hessian(model, loss, x, y)
    v = vec(model)
    assert rel(ggn_vp(model, loss, (x, y), v), G @ v) < 1e-10
    for cache in (True, False):
        for method in ("auto", "linearize", "rebuild"):
            assert rel(ggn_operator(model, loss, (x, y), cache=cache, method=method) @ v, G @ v) < 1e-10
    assert rel(dense_hessian(model, loss, (x, y), kind="ggn"), G) < 1e-10
    top = hessian_eigenvalues(model, loss, (x, y), kind="ggn", k=2, tol=1e-10).eigenvalues
    np.testing.assert_allclose(top.numpy(), torch.linalg.eigvalsh(G).numpy()[::-1][:2], rtol=1e-8)
    for method in ("rebuild", "linearize"):  # the Hessian's forward-mode paths: no fallback, no warning
        op = CurvatureOperator(model, loss, (x, y), method=method)
        assert rel(op @ v, H @ v) < 1e-10 and op.method == method
    assert rel(hvp(model, loss, (x, y), v, method="rebuild"), H @ v) < 1e-10


# ------------------------------------------------------------------- 4. unused parameters
def test_4_an_unused_trainable_parameter_gets_zero_rows():
    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.unused = nn.Linear(5, 4), nn.Linear(4, 3), nn.Linear(2, 2)

        def forward(self, x):
            return self.l2(torch.tanh(self.l1(x)))

    torch.manual_seed(0)
    model, x, y, loss = WithUnused().to(DT), inputs(), targets(kind="class"), nn.CrossEntropyLoss()
    H = reference_hessian(model, loss, x, y)
    n_used = 5 * 4 + 4 + 4 * 3 + 3
    assert H.shape == (n_used + 6, n_used + 6) and not H[n_used:].any()
    v = vec(model)
    assert rel(hvp(model, loss, (x, y), v), H @ v) < 1e-10
    assert rel(hessian_operator(model, loss, (x, y)) @ v, H @ v) < 1e-10
    dense = dense_hessian(model, loss, (x, y))
    assert rel(dense, H) < 1e-10 and not dense[n_used:].any() and not dense[:, n_used:].any()
    top = hessian_eigenvalues(model, loss, (x, y), k=2, tol=1e-10).eigenvalues
    np.testing.assert_allclose(top.numpy(), torch.linalg.eigvalsh(H).numpy()[::-1][:2], rtol=1e-8)


# ------------------------------------------------------------------- 5. k eigenvalues, always
@pytest.mark.parametrize("block_size", [1, 2, 3])
def test_5_eigenvalues_of_operators_with_few_distinct_eigenvalues(block_size):
    # the Krylov space closes after one step (one block) on the identity and on zero: the old code
    # returned fewer than k values with converged=False
    eye = MatrixOperator(torch.eye(12, dtype=DT))
    res = operator_eigenvalues(eye, k=4, tol=1e-10, block_size=block_size, return_eigenvectors=True)
    assert res.converged and res.eigenvalues.shape == (4,) and torch.allclose(res.eigenvalues, torch.ones(4, dtype=DT))
    assert torch.allclose(res.eigenvectors.T @ res.eigenvectors, torch.eye(4, dtype=DT), atol=1e-12)
    two = MatrixOperator(torch.diag(torch.tensor([3.0] * 3 + [1.0] * 9, dtype=DT)))
    res = operator_eigenvalues(two, k=5, tol=1e-10, block_size=block_size)
    assert res.converged and torch.allclose(res.eigenvalues, torch.tensor([3.0, 3, 3, 1, 1], dtype=DT))
    zero = operator_eigenvalues(MatrixOperator(torch.zeros(12, 12, dtype=DT)), k=3, which="SA", tol=1e-10,
                                block_size=block_size)
    assert zero.converged and torch.equal(zero.eigenvalues, torch.zeros(3, dtype=DT))


def test_5_a_ggn_that_is_exactly_zero_gives_k_zeros():
    # NLL is linear in log-probabilities: after a LogSoftmax inside the model, H_out = 0 and so is the GGN
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3), nn.LogSoftmax(dim=1)).to(DT)
    x, y = inputs(), targets(kind="class")
    for block_size in (1, 2):
        res = hessian_eigenvalues(model, nn.NLLLoss(), (x, y), kind="ggn", k=3, tol=1e-10, block_size=block_size)
        assert res.converged and torch.equal(res.eigenvalues, torch.zeros(3, dtype=DT))


# ------------------------------------------------------------------- 6. plain losses state their reduction
def test_6_a_plain_loss_function_must_state_its_reduction():
    # the old code took any plain function for a mean: a summed loss over three batches came out
    # weighted by n_b / N (47 % off here), silently
    model, x, y = small_mlp(), inputs(12), targets(12, kind="class")
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]
    v = vec(model)
    summed = lambda o, t: nn.functional.cross_entropy(o, t, reduction="sum")  # noqa: E731
    H_sum = reference_hessian(model, nn.CrossEntropyLoss(reduction="sum"), x, y)
    for call in (lambda **kw: hvp(model, summed, batches, v, **kw),
                 lambda **kw: ggn_vp(model, summed, batches, v, **kw),
                 lambda **kw: hessian_operator(model, summed, batches, **kw) @ v,
                 lambda **kw: hessian_eigenvalues(model, summed, batches, tol=1e-10, **kw).eigenvalues[0],
                 lambda **kw: hessian_trace(model, summed, batches, num_samples=2, **kw)[0]):
        with pytest.raises(ValueError, match=r"pass reduction='mean' or reduction='sum'"):
            call()
    assert rel(hvp(model, summed, batches, v, reduction="sum"), H_sum @ v) < 1e-10
    assert rel(hessian_operator(model, summed, batches, reduction="sum") @ v, H_sum @ v) < 1e-10
    mean = lambda o, t: nn.functional.cross_entropy(o, t)  # noqa: E731
    assert rel(hvp(model, mean, batches, v, reduction="mean"), H_sum @ v / 12) < 1e-10
    # torch's loss modules carry their reduction: nothing to pass
    assert rel(hvp(model, nn.CrossEntropyLoss(reduction="sum"), batches, v), H_sum @ v) < 1e-10


# ------------------------------------------------------------------- zoo findings
@pytest.mark.parametrize("block_size", [1, 2])
def test_a_repeated_eigenvalue_of_a_closed_krylov_space_is_reported_with_its_copies(block_size):
    # a low-rank GGN (rank ≤ N·C = 20 < P = 57): the Krylov space closes holding one copy of the
    # eigenvalue 0 per start vector; the old code stopped there with converged=True and reported the
    # smallest nonzero eigenvalues in place of the further zeros
    model, x, y, loss = small_mlp(), inputs(), targets(kind="class"), nn.CrossEntropyLoss()
    G = reference_ggn(model, loss, x, y)
    lam = torch.linalg.eigvalsh(G)
    assert float(lam[4]) < 1e-12 * float(lam[-1])  # at least five zeros
    res = hessian_eigenvalues(model, loss, (x, y), kind="ggn", k=3, which="SA", tol=1e-10, block_size=block_size)
    assert res.converged and float(res.eigenvalues.abs().max()) <= 1e-12 * float(lam[-1]), res.eigenvalues
    top = hessian_eigenvalues(model, loss, (x, y), kind="ggn", k=3, which="LA", tol=1e-10, block_size=block_size)
    np.testing.assert_allclose(top.eigenvalues.numpy(), lam.numpy()[::-1][:3], rtol=1e-8)
    # a matrix with distinct top values and a repeated bottom one
    D = MatrixOperator(torch.diag(torch.tensor([5.0, 4, 3, 1, 1, 1, 1, 1], dtype=DT)))
    res = operator_eigenvalues(D, k=4, which="SA", tol=1e-10, block_size=block_size)
    assert res.converged and torch.allclose(res.eigenvalues, torch.ones(4, dtype=DT), atol=1e-12)


def test_b_arpack_on_an_exactly_zero_ggn_is_refused_with_a_clear_message():
    # ARPACK raised its own ArpackError -9 "Starting vector is zero"; now a ValueError that says why
    # and what to use instead (our Lanczos answers: test_5_a_ggn_that_is_exactly_zero_gives_k_zeros)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3), nn.LogSoftmax(dim=1)).to(DT)
    with pytest.raises(ValueError, match=r"ARPACK \(backend='scipy'\) failed.*use backend='lanczos'"):
        hessian_eigenvalues(model, nn.NLLLoss(), (inputs(), targets(kind="class")), kind="ggn", k=3, which="LM",
                            tol=1e-10, backend="scipy")
