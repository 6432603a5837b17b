"""The curvature toolkit against explicitly formed matrices on small float64 models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from curvnb.curvature import (CurvatureOperator, dense_hessian, empirical_ntk, flatten, ggn_vp,
                              gradient_covariance_eigenvalues, gradient_covariance_trace, hessian_density,
                              hessian_eigenvalues, hessian_trace, hvp, linear_cka, ntk_distance, ntk_relative_change,
                              per_example_grads, slq_nodes, unflatten_like)

DT = torch.float64


def mlp(act):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), act(), nn.Linear(8, 6), act(), nn.Linear(6, 3)).to(DT)


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3), nn.Flatten(),
                         nn.Linear(2 * 3 * 3, 3)).to(DT)


def bn_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).to(DT)
    with torch.no_grad():  # non-trivial running statistics, then a fixed (eval) mode
        m(torch.randn(64, 5, dtype=DT) * 2 + 1)
    return m.eval()


def data_for(name, n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, 7, 7) if name == "cnn" else (n, 5)
    return torch.randn(*shape, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


MODELS = {"tanh": lambda: mlp(nn.Tanh), "relu": lambda: mlp(nn.ReLU), "cnn": cnn, "bn": bn_model}
LOSS = nn.CrossEntropyLoss()


def flat_fn(model):
    names = [n for n, p in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]
    buffers = dict(model.named_buffers())

    def f(theta, x):
        return torch.func.functional_call(model, {**dict(zip(names, unflatten_like(theta, params))), **buffers}, (x,))
    return f, flatten(params)


def reference_hessian(model, x, y):
    f, theta = flat_fn(model)
    return torch.autograd.functional.hessian(lambda t: LOSS(f(t, x), y), theta)


def reference_ggn(model, x, y):
    f, theta = flat_fn(model)
    out = f(theta, x).detach()
    J = torch.autograd.functional.jacobian(lambda t: f(t, x).reshape(-1), theta)  # (N·C, P)
    Ho = torch.autograd.functional.hessian(lambda o: LOSS(o.reshape(out.shape), y), out.reshape(-1))
    return J.T @ Ho @ J


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", list(MODELS))
def test_hvp_ggn_match_dense(name):
    model = MODELS[name]()
    x, y = data_for(name)
    H, G = reference_hessian(model, x, y), reference_ggn(model, x, y)
    V = torch.randn(H.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    for j in range(3):
        assert rel(hvp(model, LOSS, (x, y), V[:, j]), H @ V[:, j]) < 1e-6
        assert rel(ggn_vp(model, LOSS, (x, y), V[:, j]), G @ V[:, j]) < 1e-6
    for method in ("reuse", "rebuild", "linearize"):
        op = CurvatureOperator(model, LOSS, (x, y), method=method)
        assert rel(op.matmat(V), H @ V) < 1e-6
        assert rel(op.matmat(V, batched=True), H @ V) < 1e-6 and op.num_matvecs == 6
    assert rel(CurvatureOperator(model, LOSS, (x, y), kind="ggn").matmat(V, batched=True), G @ V) < 1e-6
    assert rel(dense_hessian(model, LOSS, (x, y)), H) < 1e-6
    assert rel(dense_hessian(model, LOSS, (x, y), kind="ggn"), G) < 1e-6
    assert torch.allclose(G, G.T) and torch.linalg.eigvalsh(G).min() > -1e-10  # GGN is PSD for CE


def test_linearize_method_and_bn_eval_untouched():
    model = MODELS["tanh"]()
    x, y = data_for("tanh")
    H = reference_hessian(model, x, y)
    v = torch.randn(H.shape[0], dtype=DT)
    assert rel(hvp(model, LOSS, (x, y), v, method="linearize"), H @ v) < 1e-6
    bn = MODELS["bn"]()
    before = bn[1].running_mean.clone()
    bn.train()
    hvp(bn, LOSS, data_for("bn"), torch.randn(sum(p.numel() for p in bn.parameters()), dtype=DT))
    assert torch.equal(bn[1].running_mean, before)  # operators never mutate running statistics


def test_iterable_batches_equal_concatenated():
    model = MODELS["tanh"]()
    x, y = data_for("tanh", n=30)
    batches = [(x[:7], y[:7]), (x[7:20], y[7:20]), (x[20:], y[20:])]  # unequal sizes: weighted by size
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=DT)
    assert rel(hvp(model, LOSS, batches, v), hvp(model, LOSS, (x, y), v)) < 1e-12
    assert rel(ggn_vp(model, LOSS, iter(batches), v), ggn_vp(model, LOSS, (x, y), v)) < 1e-12
    assert rel(per_example_grads(model, LOSS, batches), per_example_grads(model, LOSS, (x, y))) < 1e-12
    a = hessian_eigenvalues(model, LOSS, batches, k=2, tol=1e-8).eigenvalues
    b = hessian_eigenvalues(model, LOSS, (x, y), k=2, tol=1e-8).eigenvalues
    assert rel(a, b) < 1e-6


@pytest.mark.parametrize("name", ["tanh", "relu", "cnn", "bn"])
def test_eigenvalues_match_eigvalsh(name):
    model = MODELS[name]()
    x, y = data_for(name)
    lam = np.linalg.eigvalsh(reference_hessian(model, x, y).numpy())
    top = hessian_eigenvalues(model, LOSS, (x, y), k=3, tol=1e-6, return_eigenvectors=True)
    assert top.converged and top.eigenvalues.shape == (3,)
    assert np.all(np.diff(top.eigenvalues.numpy()) <= 0)
    assert np.max(np.abs(top.eigenvalues.numpy() / lam[::-1][:3] - 1)) < 1e-4
    assert top.eigenvectors.shape == (lam.size, 3)
    assert torch.all(top.residuals <= 1e-6 * top.eigenvalues.abs())
    sa = hessian_eigenvalues(model, LOSS, (x, y), k=2, which="SA", tol=1e-6)
    assert np.max(np.abs(sa.eigenvalues.numpy() - lam[:2][::-1])) < 1e-4 * np.abs(lam).max()
    lm = hessian_eigenvalues(model, LOSS, (x, y), k=1, which="LM", tol=1e-6)
    assert abs(float(lm.eigenvalues[0]) - lam[np.argmax(np.abs(lam))]) < 1e-4 * np.abs(lam).max()


def test_default_tolerance_and_scipy_backend():
    model = MODELS["tanh"]()
    x, y = data_for("tanh", n=40)
    lam = np.linalg.eigvalsh(reference_hessian(model, x, y).numpy())[::-1]
    res = hessian_eigenvalues(model, LOSS, (x, y), k=5, tol=1e-3)
    # the residual bound guarantees each value within tol·|θ| of an eigenvalue; these are the top 5
    assert res.converged and np.max(np.abs(res.eigenvalues.numpy() / lam[:5] - 1)) < 1e-3
    gap = hessian_eigenvalues(model, LOSS, (x, y), k=5, tol=1e-3, bound="gap")
    assert gap.converged and np.max(np.abs(gap.eigenvalues.numpy() / lam[:5] - 1)) < 1e-3
    assert gap.num_matvecs <= res.num_matvecs
    ref = hessian_eigenvalues(model, LOSS, (x, y), k=3, tol=1e-10, backend="scipy")
    assert np.max(np.abs(ref.eigenvalues.numpy() / lam[:3] - 1)) < 1e-6 and ref.num_matvecs > 0
    capped = hessian_eigenvalues(model, LOSS, (x, y), k=3, tol=1e-12, max_iter=4)
    assert not capped.converged and capped.num_matvecs == 4  # the caller can see it stopped early


def test_trace_density_and_errors():
    model = MODELS["tanh"]()
    x, y = data_for("tanh")
    H = reference_hessian(model, x, y)
    lam = np.linalg.eigvalsh(H.numpy())
    est, se = hessian_trace(model, LOSS, (x, y), num_samples=200, seed=3)
    assert se > 0 and abs(est - float(torch.trace(H))) < 3 * se
    grid, dens = hessian_density(model, LOSS, (x, y), num_runs=5, num_steps=lam.size, grid=4000)
    assert abs(np.trapezoid(dens, grid) - 1) < 1e-3
    nodes, weights = slq_nodes(CurvatureOperator(model, LOSS, (x, y)), num_runs=4, num_steps=lam.size)
    np.testing.assert_allclose(weights.sum(1), 1, atol=1e-10)
    # full-length runs: every node with weight is (numerically) an exact eigenvalue
    dist = np.abs(nodes[..., None] - lam).min(-1)
    assert np.sum(weights * (dist < 1e-6 * np.abs(lam).max())) / 4 > 0.999
    # a derived 64-bit seed (curvnb.seeds.derive) is taken whole: seeds that share their low 32 bits differ
    big = [slq_nodes(CurvatureOperator(model, LOSS, (x, y)), num_runs=2, num_steps=4, seed=(k << 32) | 3)[0]
           for k in (5, 6)]
    assert not np.allclose(big[0], big[1])
    with pytest.raises(ValueError, match="max_params"):
        dense_hessian(model, LOSS, (x, y), max_params=10)
    with pytest.raises(ValueError, match="'LA'"):
        hessian_eigenvalues(model, LOSS, (x, y), which="BE")
    with pytest.raises(ValueError, match="length P"):
        hvp(model, LOSS, (x, y), torch.zeros(3, dtype=DT))


@pytest.mark.parametrize("name", ["tanh", "cnn", "bn"])
def test_per_example_grads_and_covariance(name):
    model = MODELS[name]()
    x, y = data_for(name, n=12)
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        LOSS(model(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(flatten([p.grad for p in model.parameters()]).clone())
    G = torch.stack(rows)
    assert rel(per_example_grads(model, LOSS, (x, y), chunk_size=5), G) < 1e-10
    Gc = G - G.mean(0)
    K = Gc.T @ Gc / len(x)
    lam = torch.linalg.eigvalsh(K).flip(0)
    assert rel(gradient_covariance_eigenvalues(model, LOSS, (x, y), k=4), lam[:4]) < 1e-8
    assert rel(gradient_covariance_eigenvalues(model, LOSS, (x, y), k=3, method="lanczos", tol=1e-9), lam[:3]) < 1e-8
    assert abs(gradient_covariance_trace(model, LOSS, (x, y)) / float(torch.trace(K)) - 1) < 1e-10


def test_covariance_with_more_examples_than_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2)).to(DT)  # P = 12
    x, y = torch.randn(40, 2, dtype=DT), torch.randint(0, 2, (40,))
    G = per_example_grads(model, LOSS, (x, y))
    Gc = G - G.mean(0)
    lam = torch.linalg.eigvalsh(Gc.T @ Gc / 40).flip(0)
    assert rel(gradient_covariance_eigenvalues(model, LOSS, (x, y), k=12), lam) < 1e-8
    with pytest.raises(ValueError, match="eval"):
        per_example_grads(MODELS["bn"]().train(), LOSS, data_for("bn"))


@pytest.mark.parametrize("name", ["tanh", "cnn"])
def test_ntk_matches_explicit_jacobian(name):
    model = MODELS[name]()
    x, _ = data_for(name, n=6)
    f, theta = flat_fn(model)
    J = torch.autograd.functional.jacobian(lambda t: f(t, x), theta)  # (N, C, P)
    N, C, P = J.shape
    full = empirical_ntk(model, x)
    assert rel(full, J.reshape(N * C, P) @ J.reshape(N * C, P).T) < 1e-10
    assert torch.allclose(full, full.T) and torch.linalg.eigvalsh(full).min() > -1e-8
    tr = empirical_ntk(model, x, mode="trace")
    assert rel(tr, full.reshape(N, C, N, C).diagonal(dim1=1, dim2=3).sum(-1)) < 1e-10
    assert abs(ntk_distance(full, 3 * full)) < 1e-12 and ntk_distance(full, torch.eye(N * C, dtype=DT)) > 0
    # the relative change sees what the cosine distance cannot: a change of scale
    assert ntk_relative_change(full, full) == 0 and ntk_relative_change(full, 3 * full) == pytest.approx(2.0)
    other = full + torch.eye(N * C, dtype=DT)
    assert ntk_relative_change(full, other) == pytest.approx(float(torch.eye(N * C, dtype=DT).norm() / full.norm()))
    with pytest.raises(ValueError, match="zero"):
        ntk_relative_change(torch.zeros_like(full), full)
    with pytest.raises(ValueError, match="shapes"):
        ntk_relative_change(full, tr)
    with pytest.raises(ValueError, match="'full'"):
        empirical_ntk(model, x, mode="diag")


def test_linear_cka():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(50, 4, generator=g, dtype=DT)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=DT))
    assert abs(linear_cka(A, 2 * A @ Q + 1) - 1) < 1e-12  # invariant to rotation, scale, shift
    assert linear_cka(A, torch.randn(50, 3, generator=g, dtype=DT)) < 0.5


def test_float32_and_unflatten_roundtrip():
    model = MODELS["tanh"]().float()
    x, y = data_for("tanh")
    x = x.float()
    params = list(model.parameters())
    v = flatten(params).detach()
    assert all(torch.equal(a, b) for a, b in zip(unflatten_like(v, params), params))
    H = reference_hessian(model.double(), x.double(), y)
    model.float()
    hv = hvp(model, LOSS, (x, y), v)
    assert hv.dtype == torch.float32 and rel(hv.double(), H @ v.double()) < 1e-4
    res = hessian_eigenvalues(model, LOSS, (x, y), k=1)
    assert res.eigenvalues.dtype == torch.float32 or res.eigenvalues.dtype == torch.float64
    assert abs(float(res.eigenvalues[0]) / float(torch.linalg.eigvalsh(H)[-1]) - 1) < 1e-3
