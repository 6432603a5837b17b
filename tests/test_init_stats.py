import math

import numpy as np
import pytest
import torch
from torch import nn

from curvnb.init_stats import (CHAIN_LOG_MEAN, _regression_data, balanced_escape_theory, chain_descent,
                               chain_log_products, grad_norms_over_depths, hessian_spectrum_at_init, hessian_top_at_init, layer_grad_norms,
                               log_ratio_per_layer, median_interval, seed_batch_orders, seed_batched_mlp,
                               seed_losses, train_seeds)
from curvnb.models import deep_mlp
from curvnb.train import BatchSampler


def test_chain_log_mean_and_samples():
    assert abs(CHAIN_LOG_MEAN + 0.635) < 1e-3
    logs = chain_log_products([1, 10], 200_000, seed=0)
    assert abs(logs[1].mean() - CHAIN_LOG_MEAN) < 0.01
    assert abs(logs[10].mean() - 10 * CHAIN_LOG_MEAN) < 0.05
    assert abs(logs[1].var() - math.pi ** 2 / 8) < 0.02  # Var ln|w| = π²/8


def test_median_interval_order_statistics():
    # n = 100: the classical 95 % distribution-free interval is [x_(40), x_(61)].
    x = np.arange(1.0, 101.0)
    assert median_interval(x[::-1]) == (40.0, 61.0)
    # n = 10: ranks 2 and 9 (coverage 0.979).
    assert median_interval(np.arange(1.0, 11.0)) == (2.0, 9.0)
    # coverage of the true median is at least 95 % (normal samples, true median 0)
    rng = np.random.default_rng(0)
    hits = [lo <= 0 <= hi for lo, hi in (median_interval(rng.standard_normal(51)) for _ in range(2000))]
    assert np.mean(hits) >= 0.94
    with pytest.raises(ValueError):
        median_interval([])


def test_log_ratio_theory_matches_monte_carlo():
    assert abs(log_ratio_per_layer(4, "linear") / math.log(10) + 0.1174) < 1e-3
    assert abs(log_ratio_per_layer(16, "relu") / math.log(10) + 0.0766) < 1e-3
    assert abs(log_ratio_per_layer(64, "relu") / math.log(10) + 0.0174) < 1e-4  # the restated claim 2 value
    # Monte Carlo of one ReLU/He layer acting on a fixed vector.
    g = torch.Generator().manual_seed(0)
    d = 8
    W = torch.randn(200_000, d, d, generator=g, dtype=torch.float64) * math.sqrt(2 / d)
    h = torch.relu(W[:, :, 0])  # W e_1
    r = h.pow(2).sum(1)
    alive = r > 0
    assert abs(r[alive].log().mean().item() - log_ratio_per_layer(d, "relu")) < 0.01
    with pytest.raises(ValueError):
        log_ratio_per_layer(4, "tanh")


@pytest.mark.parametrize("kw", [{}, {"residual": True}, {"batchnorm": True}, {"residual": True, "batchnorm": True},
                                {"activation": "linear", "init": "xavier"}])
def test_seed_batched_mlp_is_deep_mlp_per_seed(kw):
    seeds = [3, 11, 4]
    batched = seed_batched_mlp(5, 6, 4, 3, seeds, **kw)
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = batched(x)
    assert out.shape == (10, 3, 3)
    for i, s in enumerate(seeds):
        m = deep_mlp(5, 6, 4, 3, seed=s, dtype=torch.float64, **kw)
        m.train()
        for w, layer in zip(batched.weights, m.layers):
            assert torch.equal(w[i], layer.weight)  # the same draws from the same generator
        torch.testing.assert_close(out[:, i], m(x), rtol=1e-12, atol=1e-12)
    # per-seed inputs (n, S, d) give each seed its own batch
    xs = torch.randn(10, 3, 4, dtype=torch.float64)
    out = batched(xs)
    torch.testing.assert_close(out[:, 1], deep_mlp(5, 6, 4, 3, seed=11, dtype=torch.float64, **kw)(xs[:, 1]))


def test_seed_losses():
    out = torch.randn(7, 2, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    ce = seed_losses(out, y, "ce")
    for s in range(2):
        assert abs(ce[s] - nn.CrossEntropyLoss()(out[:, s], y)) < 1e-12
    t = torch.randn(7, 3, dtype=torch.float64)
    mse = seed_losses(out, t, "mse")
    assert abs(mse[1] - nn.MSELoss()(out[:, 1], t)) < 1e-12
    with pytest.raises(ValueError, match="allowed values"):
        seed_losses(out, y, "hinge")


@pytest.mark.parametrize("kw", [{}, {"residual": True}, {"batchnorm": True}])
def test_layer_grad_norms_match_autograd(kw):
    """The batched computation (all seeds at once, in chunks) equals a plain backward pass per seed."""
    out = layer_grad_norms(5, 6, [3, 4, 5], d_in=4, n=10, max_elements=2 * 10 * 6 * 5, **kw)  # two chunks
    first = layer_grad_norms(5, 6, [3, 4, 5], d_in=4, n=10, first_only=True, **kw)
    assert out.shape == (3, 5) and first.shape == (3, 1)
    for i, s in enumerate([3, 4, 5]):
        m = deep_mlp(5, 6, 4, 1, seed=s, dtype=torch.float64, **kw)
        x, y = _regression_data(s, 10, 4, 1, torch.float64)
        nn.MSELoss()(m(x), y).backward()
        ref = [l.weight.grad.pow(2).sum().item() for l in m.layers]
        np.testing.assert_allclose(out[i], ref, rtol=1e-10)
        np.testing.assert_allclose(first[i, 0], ref[0], rtol=1e-10)


@pytest.mark.parametrize("kw", [{}, {"residual": True}, {"activation": "linear", "init": "xavier"}])
def test_grad_norms_over_depths_match_each_depth(kw):
    """Nets of several depths drawn once (shared first layers, one shared forward pass for plain nets)
    equal deep_mlp of each depth."""
    depths = [3, 1, 6] if not kw.get("residual") else [3, 6]
    out = grad_norms_over_depths(depths, 5, [2, 8], d_in=4, n=9, **kw)
    assert sorted(out) == sorted(depths)
    for L in depths:
        assert out[L].shape == (2, L)
        for i, s in enumerate([2, 8]):
            m = deep_mlp(L, 5, 4, 1, seed=s, dtype=torch.float64, **kw)
            x, y = _regression_data(s, 9, 4, 1, torch.float64)
            nn.MSELoss()(m(x), y).backward()
            np.testing.assert_allclose(out[L][i], [l.weight.grad.pow(2).sum().item() for l in m.layers], rtol=1e-10)


def test_layer_grad_norms_cross_entropy_on_shared_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.arange(20) % 3
    out = layer_grad_norms(4, 6, [0, 1], data=(x, y), loss="ce", residual=True, batchnorm=True)
    for i in range(2):
        m = deep_mlp(4, 6, 5, 3, seed=i, residual=True, batchnorm=True, dtype=torch.float64)
        nn.CrossEntropyLoss()(m(x), y).backward()
        np.testing.assert_allclose(out[i], [l.weight.grad.pow(2).sum().item() for l in m.layers], rtol=1e-10)


def test_hessian_helpers_use_toolkit():
    top = hessian_top_at_init(4, 3, [0], d_in=3, n=8, tol=1e-8)
    eig = hessian_spectrum_at_init(4, 3, 0, d_in=3, n=8)
    assert eig.shape == (3 * 3 * 3 + 3,)
    assert abs(top[0] - np.abs(eig).max()) < 1e-6 * np.abs(eig).max()


def test_chain_descent_gd_and_adam():
    # One GD step by hand.
    w = torch.tensor([[0.5, 2.0, 1.5]], dtype=torch.float64)
    p = 1.5
    out = chain_descent(w, lr=0.1, steps=1, record=True)
    np.testing.assert_allclose(out["loss"][:, 0], [0.5 * (p - 1) ** 2,
                                                  0.5 * (np.prod([wi - 0.1 * (p - 1) * p / wi for wi in (0.5, 2, 1.5)]) - 1) ** 2])
    # Adam equals torch.optim.Adam on each row, and the batch rows are independent.
    W = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batched = chain_descent(W, lr=0.01, steps=50, optimizer="adam", record=True)["loss"]
    for i in range(3):
        v = W[i].clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=0.01)
        for k in range(50):
            opt.zero_grad()
            loss = 0.5 * (v.prod() - 1) ** 2
            assert abs(loss.item() - batched[k, i]) < 1e-12
            loss.backward()
            opt.step()
    # Balanced chain: GD escape time follows w0^-(L-2)/((L-2)η); Adam is scale invariant.
    hit = chain_descent(torch.full((1, 6), 0.3, dtype=torch.float64), lr=0.1, steps=2000)["hit"][0]
    assert abs(hit / balanced_escape_theory(6, 0.3, 0.1) - 1) < 0.05
    a1 = chain_descent(W, lr=0.01, steps=500, optimizer="adam", eps=1e-30)["hit"]
    a2 = chain_descent(W, lr=0.01, steps=500, optimizer="adam", eps=1e-30, scale=1e-4)["hit"]
    np.testing.assert_array_equal(a1, a2)
    with pytest.raises(ValueError, match="allowed values"):
        chain_descent(W, lr=0.1, steps=1, optimizer="sgd")
    # One learning rate and loss scale per row: each row as its own call.
    lrs, scales = [0.01, 0.03, 0.02], [1.0, 1e-2, 3.0]
    for opt in ("gd", "adam"):
        rows = chain_descent(W, lr=lrs, scale=scales, steps=40, optimizer=opt, record=True)["loss"]
        for i in range(3):
            alone = chain_descent(W[i:i + 1], lr=lrs[i], scale=scales[i], steps=40, optimizer=opt, record=True)["loss"]
            np.testing.assert_array_equal(rows[:, i], alone[:, 0])
    with pytest.raises(ValueError, match="one per row"):
        chain_descent(W, lr=[0.1, 0.2], steps=1)


def test_seed_batch_orders_are_permutations():
    order = seed_batch_orders(50, [0, 1, 2])
    assert order.shape == (50, 3)
    for i in range(3):
        assert sorted(order[:, i].tolist()) == list(range(50))
    assert not torch.equal(order[:, 0], order[:, 1])
    assert torch.equal(order, seed_batch_orders(50, [0, 1, 2]))


def _reference_run(seed: int, lr: float, optimizer: str, x, y, steps: int, batch: int, kw: dict) -> list[float]:
    """One seed trained on its own (deep_mlp, torch optimizer, the seed's batch order)."""
    m = deep_mlp(4, 6, x.shape[1], 3, seed=seed, dtype=torch.float64, **kw)
    opt = torch.optim.SGD(m.parameters(), lr=lr) if optimizer == "sgd" else torch.optim.Adam(m.parameters(), lr=lr)
    order = seed_batch_orders(len(x), [seed])[:, 0]
    sampler = BatchSampler(len(x), batch, seed=0)
    losses = []
    for step in range(1, steps + 1):
        idx = order[sampler.next()]
        opt.zero_grad()
        nn.CrossEntropyLoss()(m(x[idx]), y[idx]).backward()
        opt.step()
        if step % 5 == 0:
            m.train()
            with torch.no_grad():
                losses.append(float(nn.CrossEntropyLoss()(m(x), y)))
    return losses


@pytest.mark.parametrize("kw", [{}, {"residual": True, "batchnorm": True}])
def test_train_seeds_equals_separate_runs(kw):
    """Seeds and SGD learning rates batched into one network follow each slot's own run."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    slots = [(0.05, 7), (0.2, 7), (0.2, 9)]
    model = seed_batched_mlp(4, 6, 5, 3, [s for _, s in slots], **kw)
    h = train_seeds(model, x, y, [s for _, s in slots], optimizer="sgd", lr=[lr for lr, _ in slots], steps=20,
                    batch_size=8, record_every=5)
    assert list(h["step"]) == [0, 5, 10, 15, 20] and h["loss"].shape == (5, 3)
    for i, (lr, s) in enumerate(slots):
        np.testing.assert_allclose(h["loss"][1:, i], _reference_run(s, lr, "sgd", x, y, 20, 8, kw), rtol=1e-9)
    model = seed_batched_mlp(4, 6, 5, 3, [7, 9], **kw)
    h = train_seeds(model, x, y, [7, 9], optimizer="adam", lr=0.01, steps=10, batch_size=8, record_every=5)
    for i, s in enumerate([7, 9]):
        np.testing.assert_allclose(h["loss"][1:, i], _reference_run(s, 0.01, "adam", x, y, 10, 8, kw), rtol=1e-9)
    with pytest.raises(ValueError, match="one learning rate"):
        train_seeds(model, x, y, [7, 9], optimizer="adam", lr=[0.1, 0.2], steps=1, batch_size=8)


def test_train_seeds_diverged_slot_does_not_stop_the_others():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64) * 10
    y = torch.arange(40) % 3
    kw = {"activation": "linear", "init": "xavier"}  # a linear net cannot die: a huge step overflows
    model = seed_batched_mlp(4, 6, 5, 3, [1, 1], **kw)
    h = train_seeds(model, x, y, [1, 1], optimizer="sgd", lr=[1e-4, 1e3], steps=20, batch_size=8, record_every=5)
    assert np.all(np.isinf(h["loss"][-2:, 1]))  # the huge step size diverged, and stays marked
    np.testing.assert_allclose(h["loss"][1:, 0], _reference_run(1, 1e-4, "sgd", x, y, 20, 8, kw), rtol=1e-9)
