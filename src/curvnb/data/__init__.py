"""Data sets that ship with a package or are generated offline, and loaders for local folders."""
from curvnb.data.digits import load_digits_split

__all__ = ["load_digits_split"]
from curvnb.data.mnist1d import load_mnist1d
from curvnb.data.local import load_cifar10, load_mnist_like
