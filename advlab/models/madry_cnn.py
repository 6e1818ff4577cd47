"""A larger MNIST CNN for adversarial training, of the shape Madry et al. (2018) trained their
MNIST challenge model with: more capacity than the paper's CNN, which the robust-training
literature found to matter for robustness at eps 0.3."""

from __future__ import annotations

import torch
from torch import nn


class MadryCNN(nn.Module):
    """conv 1→32 5×5 (padding 2), ReLU, max-pool 2, conv 32→64 5×5 (padding 2), ReLU, max-pool 2,
    fc 3136→1024, ReLU, fc 1024→10. No dropout.

    Takes 1×28×28 images in [0, 1] and returns logits, like :class:`advlab.models.MnistCNN`.
    ``width`` scales the conv channels and the hidden layer (1: the published sizes; 0.5 halves them
    for a quicker CPU run).
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c1, c2, hidden = (max(1, round(n * float(width))) for n in (32, 64, 1024))
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
