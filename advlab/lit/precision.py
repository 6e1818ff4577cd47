"""Speed knobs of the evaluation: the channels_last memory format, and which precision attacks
compute in when the Trainer runs in bf16 autocast (``trainer.precision=bf16-mixed``).

bf16 autocast speeds up the many evaluation forwards (clean, and one per eps); the attack itself
defaults to fp32 so the perturbation is the exact one, and ``attack_autocast`` lets it run under
the same autocast when throughput matters more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import torch

T = TypeVar("T")


def without_autocast(steps: Iterator[T], device_type: str) -> Iterator[T]:
    """Run each step of ``steps`` (an attack's ``sweep``) with autocast off, and hand its result
    out to the caller's own (possibly autocast) context.

    Switching autocast off around the whole step, not just the model's forward, matters: autograd
    dispatches backward ops such as Linear's ``mm`` under the autocast state of the thread that
    calls ``autograd.grad``, so a forward-only switch still leaves a bf16 gradient.
    """
    while True:
        with torch.autocast(device_type=device_type, enabled=False):
            try:
                item = next(steps)
            except StopIteration:
                return
        yield item


def to_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """Image batches (N×C×H×W) in channels_last layout, which tensor cores prefer; others as they are."""
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor
