"""The paper's MNIST network: the classic PyTorch MNIST example CNN (PROTOCOLS.md §VI)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advlab.errors import AdvlabError

DROPOUT_KINDS = ("dropout", "dropout2d")


class MnistCNN(nn.Module):
    """conv 1→32 3×3, ReLU, conv 32→64 3×3, ReLU, max-pool 2, dropout 0.25, fc 9216→128, ReLU,
    dropout 0.5, fc 128→10.

    Takes 1×28×28 images in [0, 1] (the protocol uses no normalization) and returns logits;
    the training loss applies log-softmax + NLL, which is the reference's recipe.

    Options for the reference protocol (PROTOCOLS.md §VI, ``experiment=paper_mnist_*_reference``):

    * ``dropout_kind="dropout2d"``: the public code's ``Dropout2d``. After the pool it zeroes
      whole feature maps (channel-wise); after fc1 its input is 2-D and it acts element-wise,
      exactly like ``nn.Dropout`` (torch then warns and drops element-wise), so that one is built
      as ``nn.Dropout``.
    * ``channels=(16, 32)``, ``hidden=64``: the half-width distillation student of the public
      code (fc 4608→64→10).
    """

    def __init__(
        self,
        num_classes: int = 10,
        dropout1: float = 0.25,
        dropout2: float = 0.5,
        dropout_kind: str = "dropout",
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
    ):
        super().__init__()
        if dropout_kind not in DROPOUT_KINDS:
            raise AdvlabError(f"model.dropout_kind must be one of {', '.join(DROPOUT_KINDS)}, got {dropout_kind!r}")
        widths = [int(c) for c in channels]
        if len(widths) != 2 or min(widths) < 1 or int(hidden) < 1:
            raise AdvlabError(
                f"model.channels must be two widths >= 1 and model.hidden >= 1, got {list(channels)} and {hidden}: "
                "e.g. model.channels=[32,64] model.hidden=128"
            )
        self.dropout_kind = dropout_kind
        first_dropout = nn.Dropout2d(dropout1) if dropout_kind == "dropout2d" else nn.Dropout(dropout1)
        self.features = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 1),
            nn.ReLU(),
            nn.Conv2d(widths[0], widths[1], 3, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            first_dropout,
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[1] * 12 * 12, int(hidden)),
            nn.ReLU(),
            nn.Dropout(dropout2),
            nn.Linear(int(hidden), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
