"""Models used across the workbook."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """The workbook's default MNIST model: two 3x3 convolutions and a small head.

    About 105k parameters. Fast enough on a 2-core CPU for a full-MNIST epoch in
    about 5 s with :func:`lrtools.mnist_loaders`, and reaches >= 99% test accuracy
    in 10 epochs with a decaying learning rate. It has no batch norm on purpose:
    the learning rate's effect stays easy to see.

    Args:
        channels: Channels of the two convolutions.
        hidden: Width of the hidden fully connected layer.

    Example:
        >>> SmallCNN()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 64) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 28 -> 14
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14 -> 7
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

