import math

import pytest
import torch

from curvnb.models import deep_mlp, neural_chain


@pytest.mark.parametrize("init,var", [("xavier", 2 / (64 + 64)), ("he", 2 / 64), ("lecun", 1 / 64)])
def test_init_variance(init, var):
    m = deep_mlp(3, 64, 64, 64, init=init, seed=0, dtype=torch.float64)
    w = torch.cat([l.weight.flatten() for l in m.layers])
    assert abs(w.var().item() / var - 1) < 0.05
    assert all(l.bias is None for l in m.layers)


def test_orthogonal_and_determinism():
    m = deep_mlp(3, 8, 8, 8, init="orthogonal", activation="linear", seed=3, dtype=torch.float64)
    w = m.layers[1].weight
    assert torch.allclose(w @ w.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    relu = deep_mlp(3, 8, 4, 8, init="orthogonal", seed=3, dtype=torch.float64)
    w = relu.layers[0].weight  # 8x4: orthonormal columns times sqrt 2
    assert torch.allclose(w.T @ w, 2 * torch.eye(4, dtype=torch.float64), atol=1e-12)
    a, b = deep_mlp(4, 5, 3, 2, seed=7), deep_mlp(4, 5, 3, 2, seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(deep_mlp(4, 5, 3, 2, seed=8).layers[0].weight, a.layers[0].weight)


def test_forward_matches_explicit_formula():
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64)
    m = deep_mlp(4, 6, 3, 2, residual=True, seed=1, dtype=torch.float64)
    W = [l.weight for l in m.layers]
    h = torch.relu(x @ W[0].T)
    for l in (1, 2):
        h = h + torch.relu(h @ W[l].T) / math.sqrt(4)
    assert torch.allclose(m(x), h @ W[3].T)
    lin = deep_mlp(3, 6, 3, 2, activation="linear", seed=1, dtype=torch.float64)
    prod = lin.layers[2].weight @ lin.layers[1].weight @ lin.layers[0].weight
    assert torch.allclose(lin(x), x @ prod.T)
    bn = deep_mlp(4, 6, 3, 2, batchnorm=True, residual=True, seed=1)
    assert bn(torch.randn(8, 3)).shape == (8, 2) and len(list(bn.parameters())) == 4  # BN has no affine params


def test_chain():
    c = neural_chain(6, init="balanced", w0=0.5)
    assert torch.allclose(c(torch.ones(1, 1, dtype=torch.float64)), torch.tensor([[0.5 ** 6]], dtype=torch.float64))
    r = neural_chain(5, seed=2)
    assert r.width == 1 and len(r.layers) == 5


def test_bad_options():
    with pytest.raises(ValueError, match="allowed values"):
        deep_mlp(3, 4, 2, 2, init="kaiming")
    with pytest.raises(ValueError, match="allowed values"):
        deep_mlp(3, 4, 2, 2, activation="gelu")
    with pytest.raises(ValueError):
        deep_mlp(2, 4, 2, 2, residual=True)
    with pytest.raises(ValueError):
        neural_chain(3, init="he")


def test_tanh_activation():
    model = deep_mlp(2, 5, 3, 2, activation="tanh", init="xavier", dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    w1, w2 = (layer.weight for layer in model.layers)
    assert torch.allclose(model(x), torch.tanh(x @ w1.T) @ w2.T)
