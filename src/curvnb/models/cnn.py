"""Convolutional networks for the break-even study: the paper's SimpleCNN (2D, CIFAR-10) and a
small 1D-CNN for MNIST-1D (the quick profile's scaled-down stand-in)."""
from __future__ import annotations

import torch
from torch import nn


def _glorot(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases (the Keras default the paper's code used)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SimpleCNN(nn.Module):
    """conv32–conv32–pool–conv64–conv64–pool–dense128–logits, ReLU, 3×3 'same' convolutions.

    ``batch_norm=True`` inserts BatchNorm after every convolution and the dense layer (the
    paper's BN variant). Inputs are (N, in_channels, image_size, image_size); outputs logits."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                 batch_norm: bool = False, width: int = 32, dense: int = 128):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2×2 poolings), got {image_size}")

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.ReLU()]

        w = width
        self.features = nn.Sequential(*block(in_channels, w), *block(w, w), nn.MaxPool2d(2),
                                      *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2), nn.Flatten())
        head: list[nn.Module] = [nn.Linear(2 * w * (image_size // 4) ** 2, dense)]
        if batch_norm:
            head.append(nn.BatchNorm1d(dense))
        self.classifier = nn.Sequential(*head, nn.ReLU(), nn.Linear(dense, num_classes))
        _glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CNN1D(nn.Module):
    """conv(k5) → ReLU → pool2 → conv(k3) → ReLU → pool2 → dense → ReLU → logits, for 1D signals.

    With the defaults on MNIST-1D (length 40) it has 24 490 parameters. Inputs are (N, length)
    or (N, 1, length)."""

    def __init__(self, length: int = 40, num_classes: int = 10, channels: int = 32, dense: int = 64):
        super().__init__()
        if length % 4:
            raise ValueError(f"length must be divisible by 4 (two 2× poolings), got {length}")
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
            nn.Linear(channels * (length // 4), dense), nn.ReLU(), nn.Linear(dense, num_classes))
        _glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1) if x.ndim == 2 else x)
