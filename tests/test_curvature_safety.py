"""No silent wrong answers: loss reductions, stochastic modules, tolerances below the dtype's
precision, one-shot product paths, the default HVP method, and block Lanczos (float64 references)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from curvnb.curvature import (CurvatureOperator, MatrixOperator, block_lanczos, dense_hessian, empirical_ntk, ggn_vp,
                              hessian_eigenvalues, hessian_trace, hvp, lanczos, loss_and_grad, min_tolerance,
                              operator_eigenvalues, per_example_grads)
from curvnb.curvature.operators import AUTO_LINEARIZE_AFTER, default_method
from curvnb.curvature.spectra import default_block_size

DT = torch.float64


def mlp(dropout: float | None = None):
    torch.manual_seed(0)
    layers = [nn.Linear(5, 8), nn.Tanh()] + ([nn.Dropout(dropout)] if dropout is not None else []) + [nn.Linear(8, 3)]
    return nn.Sequential(*layers).to(DT)


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(18, 3)).to(DT)


def data(n=24, seed=1, image=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 7, 7, generator=g, dtype=DT) if image else torch.randn(n, 5, generator=g, dtype=DT)
    return x, torch.randint(0, 3, (n,), generator=g)


def P(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def vec(model, seed=2):
    return torch.randn(P(model), dtype=DT, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ reductions
def test_sum_reduction_over_batches_is_the_sum_loss():
    model, (x, y) = mlp(), data(30)
    batches = [(x[:7], y[:7]), (x[7:20], y[7:20]), (x[20:], y[20:])]
    summed = nn.CrossEntropyLoss(reduction="sum")
    H_sum = dense_hessian(model, summed, (x, y))                      # one batch: the sum loss itself
    H_mean = dense_hessian(model, nn.CrossEntropyLoss(), (x, y))
    assert rel(H_sum, 30 * H_mean) < 1e-10
    v = vec(model)
    assert rel(hvp(model, summed, batches, v), H_sum @ v) < 1e-10     # not the size-weighted mean of sums
    assert rel(CurvatureOperator(model, summed, batches) @ v, H_sum @ v) < 1e-10
    assert rel(ggn_vp(model, summed, batches, v), 30 * ggn_vp(model, nn.CrossEntropyLoss(), (x, y), v)) < 1e-10
    loss_b, g_b = loss_and_grad(model, summed, batches)
    loss_1, g_1 = loss_and_grad(model, summed, (x, y))
    assert abs(loss_b / loss_1 - 1) < 1e-12 and rel(g_b, g_1) < 1e-12
    top = hessian_eigenvalues(model, summed, batches, k=1, tol=1e-8).eigenvalues[0]
    assert abs(float(top) / float(torch.linalg.eigvalsh(H_sum)[-1]) - 1) < 1e-6
    # a plain function says its reduction explicitly
    fn_sum = lambda o, t: nn.functional.cross_entropy(o, t, reduction="sum")  # noqa: E731
    assert rel(hvp(model, fn_sum, batches, v, reduction="sum"), H_sum @ v) < 1e-10


def test_non_scalar_losses_are_refused_clearly():
    model, (x, y) = mlp(), data()
    v = vec(model)
    with pytest.raises(ValueError, match="reduction 'none'"):
        hvp(model, nn.CrossEntropyLoss(reduction="none"), (x, y), v)
    with pytest.raises(ValueError, match="not a scalar"):
        hvp(model, lambda o, t: nn.functional.cross_entropy(o, t, reduction="none"), (x, y), v, reduction="mean")
    with pytest.raises(ValueError, match="not a scalar"):
        ggn_vp(model, lambda o, t: nn.functional.cross_entropy(o, t, reduction="none"), (x, y), v, reduction="mean")
    with pytest.raises(ValueError, match="reduction 'none'"):
        loss_and_grad(model, nn.MSELoss(reduction="none"), (x, torch.zeros(len(x), 3, dtype=DT)))


def test_means_that_are_not_over_examples_are_refused_across_batches():
    model, (x, y) = mlp(), data(20)
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    v = vec(model)
    weighted = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0], dtype=DT))
    with pytest.raises(ValueError, match="class-weighted"):
        hvp(model, weighted, batches, v)
    hvp(model, weighted, (x, y), v)  # one batch: the loss as defined, fine
    y2 = y.clone()
    y2[3] = -100
    with pytest.raises(ValueError, match="ignore_index"):
        hvp(model, nn.CrossEntropyLoss(), [(x[:8], y2[:8]), (x[8:], y2[8:])], v)
    hvp(model, nn.CrossEntropyLoss(), batches, v)  # no ignored targets: fine


# ------------------------------------------------------------------------------------ stochastic modules
def test_dropout_in_training_mode_is_refused_unless_allowed():
    model, (x, y) = mlp(dropout=0.3), data()
    loss = nn.CrossEntropyLoss()
    v = vec(model)
    for call in (lambda: hessian_eigenvalues(model, loss, (x, y)), lambda: hvp(model, loss, (x, y), v),
                 lambda: ggn_vp(model, loss, (x, y), v), lambda: hessian_trace(model, loss, (x, y), num_samples=2),
                 lambda: per_example_grads(model, loss, (x, y)), lambda: empirical_ntk(model, x)):
        with pytest.raises(ValueError, match=r"2 \(Dropout\).*allow_stochastic=True|2 \(Dropout\)"):
            call()
    # opted in: runs (a random operator); in eval() mode: the deterministic answer, identical twice
    hvp(model, loss, (x, y), v, allow_stochastic=True)
    assert per_example_grads(model, loss, (x, y), allow_stochastic=True).shape == (len(x), P(model))
    model.eval()
    a = hessian_eigenvalues(model, loss, (x, y), tol=1e-8).eigenvalues
    b = hessian_eigenvalues(model, loss, (x, y), tol=1e-8).eigenvalues
    assert torch.equal(a, b)
    # Dropout with p = 0 and BatchNorm in training mode are deterministic: accepted
    hvp(mlp(dropout=0.0).train(), loss, (x, y), v)
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).to(DT).train()
    assert hessian_eigenvalues(bn, loss, (x, y), tol=1e-6).converged


# ------------------------------------------------------------------------------------ tolerance vs dtype
def test_tolerance_below_the_dtype_precision_is_refused():
    model, (x, y) = mlp(), data()
    loss = nn.CrossEntropyLoss()
    m32, x32 = mlp().float(), x.float()
    with pytest.raises(ValueError, match="below what torch.float32 can certify"):
        hessian_eigenvalues(m32, loss, (x32, y), tol=1e-8)
    with pytest.raises(ValueError, match="float32"):
        hessian_eigenvalues(m32, loss, (x32, y), tol=1e-8, backend="scipy")
    with pytest.raises(ValueError, match="float64"):
        lanczos(lambda v: v, 10, tol=1e-17)
    assert min_tolerance(torch.float32) == pytest.approx(1.19e-6, rel=1e-2)
    exact = torch.linalg.eigvalsh(dense_hessian(model, loss, (x, y)))[-1]
    r32 = hessian_eigenvalues(m32, loss, (x32, y), tol=1e-5)
    assert r32.converged and abs(float(r32.eigenvalues[0]) / float(exact) - 1) < 1e-5
    r64 = hessian_eigenvalues(model, loss, (x, y), tol=1e-12)
    assert r64.converged and abs(float(r64.eigenvalues[0]) / float(exact) - 1) < 1e-11


# ------------------------------------------------------------------------------------ one-shot paths, methods
@pytest.mark.parametrize("name", ["mlp", "cnn", "bn-train"])
def test_one_shot_products_equal_cached_operators(name):
    if name == "cnn":
        model, (x, y) = cnn(), data(image=True)
    elif name == "mlp":
        model, (x, y) = mlp(), data()
    else:
        torch.manual_seed(0)
        model, (x, y) = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).to(DT), data()
    loss = nn.CrossEntropyLoss()
    batches = [(x[:10], y[:10]), (x[10:], y[10:])]
    H = dense_hessian(model, loss, batches, method="rebuild")
    G = dense_hessian(model, loss, batches, kind="ggn", method="rebuild")
    for seed in range(2):
        v = vec(model, seed)
        assert rel(hvp(model, loss, batches, v), H @ v) < 1e-10
        assert rel(ggn_vp(model, loss, batches, v), G @ v) < 1e-10
        assert rel(CurvatureOperator(model, loss, batches, cache=False) @ v, H @ v) < 1e-10
        assert rel(CurvatureOperator(model, loss, batches, kind="ggn", cache=False) @ v, G @ v) < 1e-10
    if name == "bn-train":
        assert not torch.equal(H, dense_hessian(model.eval(), loss, batches))  # train/eval differ: mode respected


@pytest.mark.parametrize("norm", ["layernorm", "batchnorm-train"])
def test_every_hessian_path_is_exact_through_normalisation_layers(norm):
    # Reverse over forward (a forward-mode J v, then the gradient of <∇_out loss, J v>) would skip work
    # that double backward does, but torch's forward-mode rules for these layers use the normalisation
    # statistics as constants, so differentiating them once more gives wrong products (20-35 % off
    # here). Every Hessian path must stay exact through them.
    torch.manual_seed(0)
    layer = nn.LayerNorm(8) if norm == "layernorm" else nn.BatchNorm1d(8)
    model = nn.Sequential(nn.Linear(5, 8), layer, nn.Tanh(), nn.Linear(8, 3)).to(DT).train()
    x, y = data()
    loss = nn.CrossEntropyLoss()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss_of(theta):
        parts = torch.split(theta, [int(np.prod(s)) for s in shapes])
        state = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        state.update({n: b.clone() for n, b in model.named_buffers()})
        return loss(torch.func.functional_call(model, state, (x,)), y)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    H = torch.autograd.functional.hessian(loss_of, theta)
    v = vec(model)
    products = {"hvp()": hvp(model, loss, (x, y), v)}
    products.update({method: CurvatureOperator(model, loss, (x, y), method=method) @ v
                     for method in ("reuse", "linearize", "rebuild")})
    products["cache=False"] = CurvatureOperator(model, loss, (x, y), cache=False) @ v
    for name, product in products.items():
        assert rel(product, H @ v) < 1e-10, name


def test_default_method_switches_to_linearize_on_convolutions_and_can_be_overridden():
    loss = nn.CrossEntropyLoss()
    assert default_method(mlp()) == "reuse" and default_method(cnn()) == "linearize"
    mlp_op = CurvatureOperator(mlp(), loss, data())
    assert mlp_op.method == "reuse" and mlp_op.switch_after is None
    assert CurvatureOperator(cnn(), loss, data(image=True), method="reuse").switch_after is None
    assert CurvatureOperator(cnn(), loss, data(image=True), method="linearize").method == "linearize"
    assert CurvatureOperator(cnn(), loss, data(image=True), cache=False).switch_after is None  # one-shot
    model, (x, y) = cnn(), data(image=True)
    batches = [(x[:10], y[:10]), (x[10:], y[10:])]
    H = dense_hessian(model, loss, batches, method="rebuild")
    op = CurvatureOperator(model, loss, batches)
    assert op.requested_method == "auto" and op.method == "reuse" and op.switch_after == AUTO_LINEARIZE_AFTER
    op.switch_after = 3  # (the default is 50 products per batch; 3 keeps the test short)
    V = torch.randn(P(model), 5, dtype=DT, generator=torch.Generator().manual_seed(0))
    methods = []
    for j in range(5):
        assert rel(op @ V[:, j], H @ V[:, j]) < 1e-10
        methods.append(op.method)
    assert methods == ["reuse"] * 3 + ["linearize"] * 2 and op.num_matvecs == 5
    assert rel(op.matmat(V, batched=True), H @ V) < 1e-10


# ------------------------------------------------------------------------------------ block Lanczos
def known_operator(top, n=60, seed=0):
    """A symmetric matrix with eigenvalues ``top`` followed by a bulk in [0, 1], random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    lam = torch.cat([torch.tensor(top, dtype=DT), torch.rand(n - len(top), generator=g, dtype=DT)])
    return MatrixOperator((Q * lam) @ Q.T), lam


def test_block_lanczos_finds_a_triple_top_eigenvalue_by_construction():
    op, lam = known_operator([5.0, 5.0, 5.0, 4.0])
    res = operator_eigenvalues(op, k=4, tol=1e-10, block_size=3, return_eigenvectors=True)
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues.numpy(), [5, 5, 5, 4], rtol=1e-9)
    A = op.matrix
    assert torch.allclose(A @ res.eigenvectors, res.eigenvectors * res.eigenvalues, atol=1e-8)
    assert torch.allclose(res.eigenvectors.T @ res.eigenvectors, torch.eye(4, dtype=DT), atol=1e-8)
    # single-vector Lanczos from a random start sees one copy in exact arithmetic; in floating point
    # it may or may not recover the others: only the block result is asserted
    small = block_lanczos(op.matmat, 60, k=2, block_size=2, which="SA", tol=1e-8)
    np.testing.assert_allclose(np.sort(small.eigenvalues.numpy()), np.sort(lam.numpy())[:2], rtol=1e-6)


def test_block_lanczos_on_a_tiny_net_matches_eigvalsh():
    model, (x, y) = mlp(), data()
    loss = nn.CrossEntropyLoss()
    lam = torch.linalg.eigvalsh(dense_hessian(model, loss, (x, y), method="rebuild")).numpy()[::-1]
    for b in (2, 3):
        res = hessian_eigenvalues(model, loss, (x, y), k=3, tol=1e-8, block_size=b)
        assert res.converged and res.num_matvecs % 1 == 0
        np.testing.assert_allclose(res.eigenvalues.numpy(), lam[:3], rtol=1e-7)
    one = hessian_eigenvalues(model, loss, (x, y), k=3, tol=1e-8, block_size=1)
    np.testing.assert_allclose(one.eigenvalues.numpy(), lam[:3], rtol=1e-7)
    with pytest.raises(ValueError, match="residual"):
        hessian_eigenvalues(model, loss, (x, y), k=3, block_size=2, bound="gap")


def test_default_block_size_is_a_block_of_two_for_top_k_on_the_cpu():
    op = MatrixOperator(torch.diag(torch.arange(40, dtype=DT)))
    assert [default_block_size(op, k) for k in (1, 2, 5)] == [1, 2, 2]
    assert default_block_size(op, 5, bound="gap") == 1
    gpu_like = type("Op", (), {"device": torch.device("cuda")})()
    assert default_block_size(gpu_like, 5) == 5 and default_block_size(gpu_like, 5, bound="gap") == 1
    # the defaults run: block Lanczos for k = 5 (products counted in blocks of 2), single vector for
    # the gap bound (which block Lanczos refuses when asked for explicitly)
    lam = np.arange(40)[::-1][:5]
    block = operator_eigenvalues(op, k=5, tol=1e-10)
    np.testing.assert_allclose(block.eigenvalues.numpy(), lam, rtol=1e-9)
    explicit = operator_eigenvalues(MatrixOperator(op.matrix), k=5, tol=1e-10, block_size=2)
    assert block.converged and torch.equal(block.eigenvalues, explicit.eigenvalues)
    assert block.num_matvecs == explicit.num_matvecs
    gap = operator_eigenvalues(MatrixOperator(op.matrix), k=5, tol=1e-10, bound="gap")
    np.testing.assert_allclose(gap.eigenvalues.numpy(), lam, rtol=1e-9)


def test_frozen_parameters_are_skipped():
    model, (x, y) = mlp(), data()
    loss = nn.CrossEntropyLoss()
    H_full = dense_hessian(model, loss, (x, y), method="rebuild")
    model[0].weight.requires_grad_(False)   # P now counts only the trainable parameters
    keep = torch.cat([torch.zeros(40, dtype=torch.bool), torch.ones(H_full.shape[0] - 40, dtype=torch.bool)])
    H_sub = H_full[keep][:, keep]
    v = vec(model)
    assert v.numel() == int(keep.sum())
    assert rel(hvp(model, loss, (x, y), v), H_sub @ v) < 1e-10
    assert rel(CurvatureOperator(model, loss, (x, y)) @ v, H_sub @ v) < 1e-10
    assert rel(ggn_vp(model, loss, (x, y), v), dense_hessian(model, loss, (x, y), kind="ggn") @ v) < 1e-10
    assert per_example_grads(model, loss, (x, y)).shape == (len(x), int(keep.sum()))
