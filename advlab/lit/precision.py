"""Speed knobs of the evaluation: the channels_last memory format, which precision attacks
compute in when the Trainer runs in bf16 autocast (``trainer.precision=bf16-mixed``), and
``torch.compile`` of the model.

bf16 autocast speeds up the many evaluation forwards (clean, and one per eps); the attack itself
defaults to fp32 so the perturbation is the exact one, and ``attack_autocast`` lets it run under
the same autocast when throughput matters more. Under autocast only the model's forward and
backward run in bf16: the input stays fp32, so its gradient comes back in fp32 and the attack's
iterate, step and projection are fp32 arithmetic (:func:`attack_precision` for plain use).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import torch
from torch import nn

from advlab.errors import AdvlabError

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16")

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


def attack_precision(device_type: str, precision: str = "fp32") -> AbstractContextManager[object]:
    """Context for running an attack outside Lightning: ``fp32`` (exact, the default), or
    ``bf16`` (autocast for the model's forward and backward; perturbation and projection fp32)."""
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    raise AdvlabError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` the model for long attacks (PGD, CW, patch training): compiling costs
    seconds to minutes at the first call, which :class:`FirstCallTimer` reports."""
    return torch.compile(model)  # type: ignore[return-value]


class FirstCallTimer:
    """Logs how long the first batch took (compiling included) against the second, so the cost
    of ``torch.compile`` is stated in the job's log."""

    def __init__(self, what: str):
        self.what = what
        self.seconds: list[float] = []
        self._start = 0.0

    def start(self) -> None:
        if len(self.seconds) < 2:
            self._start = time.perf_counter()

    def stop(self) -> None:
        if len(self.seconds) >= 2:
            return
        self.seconds.append(time.perf_counter() - self._start)
        if len(self.seconds) == 2:
            first, second = self.seconds
            log.info("%s: first batch %.1f s (compiling included), second %.1f s", self.what, first, second)
