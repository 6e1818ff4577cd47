"""The paper's MNIST network: the classic PyTorch MNIST example CNN (PROTOCOLS.md §VI)."""

from __future__ import annotations

import torch
from torch import nn


class MnistCNN(nn.Module):
    """conv 1→32 3×3, ReLU, conv 32→64 3×3, ReLU, max-pool 2, dropout 0.25, fc 9216→128, ReLU,
    dropout 0.5, fc 128→10.

    Takes 1×28×28 images in [0, 1] (the protocol uses no normalization) and returns logits;
    the training loss applies log-softmax + NLL, which is the reference's recipe.
    """

    def __init__(self, num_classes: int = 10, dropout1: float = 0.25, dropout2: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(dropout1),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(9216, 128),
            nn.ReLU(),
            nn.Dropout(dropout2),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
