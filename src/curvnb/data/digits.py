"""scikit-learn's 8×8 digits (1797 images, ships inside scikit-learn: no download)."""
from __future__ import annotations

import numpy as np
import torch


def load_digits_split(n_test: int = 297, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu", standardize: bool = True, image: bool = False):
    """``(x_train, y_train, x_test, y_test)`` tensors from sklearn's digits.

    Inputs are standardised with the training split's mean/std per pixel (constant pixels
    keep std 1); ``image=True`` returns (N, 1, 8, 8) instead of (N, 64). The split is a
    seeded permutation, so it is the same for a given ``seed`` on every machine."""
    from sklearn.datasets import load_digits

    if not 0 < n_test < 1797:
        raise ValueError(f"n_test must be in (0, 1797), got {n_test}")
    data = load_digits()
    x, y = data.data.astype(np.float64), data.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    x_train, x_test, y_train, y_test = x[n_test:], x[:n_test], y[n_test:], y[:n_test]
    if standardize:
        mean, std = x_train.mean(0), x_train.std(0)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if image:
        x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return t(x_train, dtype), t(y_train, torch.long), t(x_test, dtype), t(y_test, torch.long)
