"""Normalization inside the model, so that every attack sees images in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std as buffers (they move with the model)."""

    mean: torch.Tensor  # registered as buffers in __init__; declared for the type checker
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if any(s <= 0 for s in std):
            raise ValueError(f"Normalize std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedClassifier(nn.Module):
    """A classifier that takes [0, 1] images: ``net(normalize(x))``.

    ``net`` keeps its own parameter names, so a state dict of the bare network loads into
    ``.net`` unchanged.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def input_std(model: nn.Module) -> torch.Tensor | None:
    """The per-channel std a model divides its [0, 1] input by (shape 1×C×1×1), or None.

    Attacks use it to convert an eps stated in normalized units into pixel units.
    """
    for module in model.modules():
        if isinstance(module, Normalize):
            return module.std
    return None
