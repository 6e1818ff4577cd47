"""Progress display of a Trainer: Rich bars on a terminal, plain log lines everywhere else.

A live bar redrawn into a CI log or a SLURM output file is either silent until the end (Rich)
or thousands of carriage-return fragments (tqdm); :class:`LineProgress` writes one log line per
training epoch and a few per evaluation instead. ``callbacks.progress_bar`` picks one:
``auto`` (Rich on a terminal or in a notebook, lines otherwise), ``rich``, ``tqdm``, ``lines``
or ``none``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

from advlab.errors import AdvlabError

log = logging.getLogger("advlab.progress")

CHOICES = ("auto", "rich", "tqdm", "lines", "none")


def interactive() -> bool:
    """Whether live bars can be drawn: stdout is a terminal (as Rich sees it, so FORCE_TERMINAL
    and friends apply) or a Jupyter notebook."""
    from rich.console import Console

    console = Console()
    return console.is_terminal or console.is_jupyter


class StageRichProgressBar(RichProgressBar):
    """Rich bars whose evaluation bar names the stage: an attack evaluation is not a "Testing"."""

    def __init__(self, stage: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.stage = stage

    @property
    def test_description(self) -> str:
        return f"{self.stage}: clean + attacks"


class LineProgress(ProgressBar):
    """One log line per training epoch (its progress-bar metrics and time) and one per quarter
    of an evaluation."""

    def __init__(self, stage: str, marks: int = 4):
        super().__init__()
        self.stage = stage
        self.marks = marks
        self._enabled = True
        self._started = 0.0
        self._next_mark = 1

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        values = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        log.info("%s: epoch %d%s  %s  (%.1f s)", self.stage, trainer.current_epoch + 1, epochs, values, time.monotonic() - self._started)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()
        self._next_mark = 1

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        total = trainer.num_test_batches[dataloader_idx] if trainer.num_test_batches else 0
        if not self._enabled or not total or total == float("inf"):
            return
        done = batch_idx + 1
        if done * self.marks >= self._next_mark * total:
            self._next_mark = done * self.marks // int(total) + 1
            log.info("%s: %d/%d batches  (%.1f s)", self.stage, done, int(total), time.monotonic() - self._started)


def progress_bar(choice: str, stage: str) -> ProgressBar | None:
    """The progress-bar callback for ``callbacks.progress_bar`` (None for ``none``)."""
    if choice not in CHOICES:
        raise AdvlabError(f"unknown callbacks.progress_bar {choice!r}: use one of {', '.join(CHOICES)}")
    if choice == "auto":
        choice = "rich" if interactive() else "lines"
    if choice == "rich":
        return StageRichProgressBar(stage)
    if choice == "tqdm":
        return TQDMProgressBar()
    if choice == "lines":
        return LineProgress(stage)
    return None
