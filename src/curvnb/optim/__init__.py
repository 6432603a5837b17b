"""Optimizers as torch.optim.Optimizer subclasses."""
from curvnb.optim.alice import Alice, HeavyBallAlice
from curvnb.optim.exact_gauss_newton import ExactGaussNewton
from curvnb.optim.natural_gradient import BlockDiagonalNaturalGradient, FractionalNaturalGradient

__all__ = ["Alice", "HeavyBallAlice", "BlockDiagonalNaturalGradient", "ExactGaussNewton", "FractionalNaturalGradient"]

