"""Optimizers as torch.optim.Optimizer subclasses."""
from curvnb.optim.alice import Alice
