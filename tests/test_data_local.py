import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from curvnb.data import load_cifar10, load_mnist_like


def _idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(str(path) + (".gz" if gz else ""), "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_like_reads_idx(tmp_path, gz):
    rng = np.random.default_rng(0)
    xtr, ytr = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    xte, yte = rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)
    for name, arr in (("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                      ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)):
        _idx(tmp_path / name, arr, gz)
    a, b, c, d = load_mnist_like(tmp_path, name="fashion-mnist")
    assert a.shape == (7, 1, 28, 28) and c.shape == (3, 1, 28, 28)
    assert torch.allclose(a[:, 0] * 255, torch.as_tensor(xtr, dtype=torch.float32))
    assert b.tolist() == ytr.tolist() and d.dtype == torch.long and d.tolist() == yte.tolist()


def test_cifar10_reads_batches(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = rng.integers(0, 256, (2, 3072), dtype=np.uint8), rng.integers(0, 10, 2).tolist()
        expected.append((x, y))
        pickle.dump({b"data": x, b"labels": y}, open(folder / name, "wb"))
    xtr, ytr, xte, yte = load_cifar10(tmp_path)
    assert xtr.shape == (10, 3, 32, 32) and xte.shape == (2, 3, 32, 32)
    assert torch.allclose(xtr[0] * 255, torch.as_tensor(expected[0][0][0].reshape(3, 32, 32), dtype=torch.float32))
    assert ytr.tolist() == sum((e[1] for e in expected[:5]), []) and yte.tolist() == expected[5][1]


def test_missing_data_names_folder_and_source(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar10(tmp_path / "nothing")
    assert "nothing" in str(err.value) and "data_batch_1" in str(err.value) and "cs.toronto.edu" in str(err.value)
    monkeypatch.setenv("CURVNB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_mnist_like(name="mnist")
    assert str(tmp_path / "mnist") in str(err.value) and "train-images-idx3-ubyte" in str(err.value)
    with pytest.raises(ValueError, match="allowed values"):
        load_mnist_like(tmp_path, name="kmnist")
