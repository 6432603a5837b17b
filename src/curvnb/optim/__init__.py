"""Optimizers as torch.optim.Optimizer subclasses."""
