"""Loaders for data sets kept in a local folder (the full profiles; nothing is downloaded).

The folder defaults to ``$CURVNB_DATA/<name>`` if ``CURVNB_DATA`` is set, else ``data/<name>``
under the project root. A missing folder or file raises ``FileNotFoundError`` naming the folder,
the files expected there and where to obtain them (see ``data/README.md``).

- :func:`load_cifar10` reads the standard CIFAR-10 *python* batches ``data_batch_1`` … ``data_batch_5``
  and ``test_batch`` (pickles with ``b"data"`` (N, 3072) uint8 and ``b"labels"``).
- :func:`load_mnist_like` reads the standard IDX files of MNIST / Fashion-MNIST
  (``train-images-idx3-ubyte`` …), plain or ``.gz``.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from curvnb.paths import project_root

CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SOURCES = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract; the files are in cifar-10-batches-py/)",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist (data/fashion/*.gz)",
    "mnist": "http://yann.lecun.com/exdb/mnist/ or any mirror of the four IDX files",
}
MNIST_NAMES = ("fashion-mnist", "mnist")


def data_folder(name: str, folder: str | os.PathLike | None = None) -> Path:
    """``folder`` if given, else ``$CURVNB_DATA/<name>``, else ``<project root>/data/<name>``."""
    if folder is not None:
        return Path(folder)
    env = os.environ.get("CURVNB_DATA")
    return (Path(env) if env else project_root() / "data") / name


def _missing(name: str, folder: Path, expected: list[str]) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: cannot find {', '.join(expected)} in {folder}. Download the data set from "
        f"{SOURCES[name]} and put the files in {folder} (or point $CURVNB_DATA at the parent folder, "
        f"or pass folder=...). See data/README.md.")


def load_cifar10(folder: str | os.PathLike | None = None, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
    """``(x_train, y_train, x_test, y_test)``: images (N, 3, 32, 32) scaled to [0, 1], labels int64.

    ``folder`` holds the python batches directly or inside ``cifar-10-batches-py/``."""
    root = data_folder("cifar10", folder)
    base = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    absent = [f for f in CIFAR10_FILES if not (base / f).is_file()]
    if absent:
        raise _missing("cifar10", base, absent)

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        with open(base / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(batch[b"labels"], dtype=np.int64)

    train = [read(f) for f in CIFAR10_FILES[:-1]]
    x_test, y_test = read("test_batch")
    x_train, y_train = np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])
    as_x = lambda a: torch.as_tensor(a, device=device).to(dtype) / 255.0  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
    return as_x(x_train), as_y(y_train), as_x(x_test), as_y(y_test)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (``.gz`` or plain) as a uint8 array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def load_mnist_like(folder: str | os.PathLike | None = None, name: str = "fashion-mnist", *,
                    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
    """``(x_train, y_train, x_test, y_test)`` of MNIST or Fashion-MNIST: images (N, 1, 28, 28) in [0, 1]."""
    if name not in MNIST_NAMES:
        raise ValueError(f"unknown data set {name!r}: allowed values are {', '.join(map(repr, MNIST_NAMES))}")
    base = data_folder(name, folder)
    paths, absent = [], []
    for f in MNIST_FILES:
        found = next((base / c for c in (f, f + ".gz") if (base / c).is_file()), None)
        paths.append(found)
        if found is None:
            absent.append(f"{f}[.gz]")
    if absent:
        raise _missing(name, base, absent)
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"{base}: image and label counts differ")
    as_x = lambda a: torch.as_tensor(a.copy(), device=device).to(dtype).unsqueeze(1) / 255.0  # noqa: E731
    as_y = lambda a: torch.as_tensor(a.astype(np.int64), device=device)  # noqa: E731
    return as_x(x_train), as_y(y_train), as_x(x_test), as_y(y_test)
