import math

import numpy as np
import pytest
import torch
from torch import nn

from curvnb.init_stats import (CHAIN_LOG_MEAN, balanced_escape_theory, chain_descent, chain_log_products,
                               hessian_spectrum_at_init, hessian_top_at_init, layer_grad_norms, log_ratio_per_layer,
                               train_classifier)
from curvnb.models import deep_mlp


def test_chain_log_mean_and_samples():
    assert abs(CHAIN_LOG_MEAN + 0.635) < 1e-3
    logs = chain_log_products([1, 10], 200_000, seed=0)
    assert abs(logs[1].mean() - CHAIN_LOG_MEAN) < 0.01
    assert abs(logs[10].mean() - 10 * CHAIN_LOG_MEAN) < 0.05
    assert abs(logs[1].var() - math.pi ** 2 / 8) < 0.02  # Var ln|w| = π²/8


def test_log_ratio_theory_matches_monte_carlo():
    assert abs(log_ratio_per_layer(4, "linear") / math.log(10) + 0.1174) < 1e-3
    assert abs(log_ratio_per_layer(16, "relu") / math.log(10) + 0.0766) < 1e-3
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


@pytest.mark.parametrize("kw", [{}, {"residual": True}, {"batchnorm": True}])
def test_layer_grad_norms_match_autograd(kw):
    """The vmap path (and the BN loop) equals a plain backward pass per seed."""
    out = layer_grad_norms(5, 6, [3, 4], d_in=4, n=10, **kw)
    assert out.shape == (2, 5)
    from curvnb.init_stats import _regression_data
    for i, s in enumerate([3, 4]):
        m = deep_mlp(5, 6, 4, 1, seed=s, dtype=torch.float64, **kw)
        x, y = _regression_data(s, 10, 4, 1, torch.float64)
        nn.MSELoss()(m(x), y).backward()
        ref = [l.weight.grad.pow(2).sum().item() for l in m.layers]
        np.testing.assert_allclose(out[i], ref, rtol=1e-10)


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


def test_train_classifier_decreases_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (x[:, 0] > 0).long()
    m = deep_mlp(3, 16, 5, 2, seed=0)
    h = train_classifier(m, x, y, optimizer="adam", lr=1e-2, steps=60, batch_size=16, record_every=20)
    assert h["step"] == [0, 20, 40, 60] and h["loss"][-1] < 0.5 * h["loss"][0]
