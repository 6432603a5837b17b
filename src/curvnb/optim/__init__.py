"""Optimizers as torch.optim.Optimizer subclasses."""
from curvnb.optim.alice import Alice
from curvnb.optim.exact_gauss_newton import ExactGaussNewton
