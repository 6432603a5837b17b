"""MNIST-1D generated offline, the 1D-CNN and SimpleCNN shapes."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from curvnb.data import load_mnist1d
from curvnb.models import CNN1D, SimpleCNN


def test_mnist1d_offline_seeded_standardised(monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("load_mnist1d must not download")

    monkeypatch.setattr(requests, "get", no_network)
    np.random.seed(7)
    random.seed(7)
    before = (np.random.get_state()[1].copy(), random.getstate())
    xtr, ytr, xte, yte = load_mnist1d(500, seed=3)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    assert xtr.shape == (400, 40) and xte.shape == (100, 40) and ytr.dtype == torch.long
    assert set(ytr.tolist()) == set(range(10))
    assert torch.allclose(xtr.double().mean(0), torch.zeros(40, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(xtr.double().std(0, unbiased=False), torch.ones(40, dtype=torch.float64), atol=1e-4)
    again = load_mnist1d(500, seed=3)
    assert torch.equal(again[0], xtr) and torch.equal(again[3], yte)
    other = load_mnist1d(500, seed=4)
    assert not torch.equal(other[0], xtr)
    with pytest.raises(ValueError, match="train_split"):
        load_mnist1d(500, train_split=1.5)


def test_cnn1d_and_simplecnn_shapes():
    torch.manual_seed(0)
    m = CNN1D()
    assert sum(p.numel() for p in m.parameters()) == 24490
    assert m(torch.randn(7, 40)).shape == (7, 10) and m(torch.randn(7, 1, 40)).shape == (7, 10)
    s = SimpleCNN(image_size=32)
    assert s(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    bn = SimpleCNN(in_channels=1, image_size=8, batch_norm=True)
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in bn.modules())
    assert bn(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    with pytest.raises(ValueError, match="divisible"):
        SimpleCNN(image_size=30)
