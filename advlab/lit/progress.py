"""Progress display of a Trainer: Rich bars on a terminal, plain log lines everywhere else.

A live bar redrawn into a CI log or a SLURM output file is either silent until the end (Rich)
or thousands of carriage-return fragments (tqdm); :class:`LineProgress` writes one log line per
training epoch and a few per evaluation instead. ``callbacks.progress_bar`` picks one:
``auto`` (Rich on a terminal or in a notebook, lines otherwise), ``rich``, ``tqdm``, ``lines``
or ``none``.

An evaluation batch can run for minutes (PGD-40 on 1 000 images): a :class:`Heartbeat` keeps
the display alive within a batch. The lines display logs "still running" every
``heartbeat_s`` seconds; the Rich bar keeps its elapsed time ticking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar, TQDMProgressBar
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


class Heartbeat:
    """Calls ``beat(seconds since the batch started)`` every ``interval`` seconds while one batch
    runs, from a daemon thread (the batch itself runs in the main thread, in C++ most of the time)."""

    def __init__(self, interval: float, beat: Callable[[float], None]):
        self.interval = float(interval)
        self.beat = beat
        self._started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def batch_started(self) -> None:
        self._started = time.monotonic()
        if self._thread is None and self.interval > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="advlab-heartbeat", daemon=True)
            self._thread.start()

    def batch_ended(self) -> None:
        self._started = None

    def stop(self) -> None:
        self._started = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            started = self._started
            if started is None or time.monotonic() - started < self.interval * 0.99:
                continue  # no batch, or one that has not run a whole interval yet
            try:
                self.beat(time.monotonic() - started)
            except Exception:  # a display problem must never end the job
                log.debug("heartbeat failed", exc_info=True)


class HeartbeatHooks(Callback):
    """Mixin for a progress callback with a ``_heartbeat``: it beats within each test batch (when
    :meth:`_beats` says so) and its thread stops when testing ends. Put it before the bar's class."""

    _heartbeat: Heartbeat

    def _beats(self) -> bool:
        return True

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        super().on_test_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if self._beats():
            self._heartbeat.batch_started()

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._heartbeat.batch_ended()
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._heartbeat.stop()
        super().on_test_end(trainer, pl_module)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._heartbeat.stop()
        super().teardown(trainer, pl_module, stage)


class StageRichProgressBar(HeartbeatHooks, RichProgressBar):
    """Rich bars that name the stage (an attack evaluation is not a "Testing"), count epochs from
    1 (Lightning's own bar says "Epoch 0/0" for a one-epoch run), and keep the elapsed time of a
    long evaluation batch ticking."""

    def __init__(self, stage: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.stage = stage
        self._heartbeat = Heartbeat(1.0, lambda _: self.refresh())

    @property
    def test_description(self) -> str:
        return f"{self.stage}: clean + attacks"

    def _get_train_description(self, current_epoch: int) -> str:
        epochs = self.trainer.max_epochs
        description = f"{self.stage}: epoch {current_epoch + 1}" + (f"/{epochs}" if epochs and epochs > 0 else "")
        # as long as the validation bar's description, so the bars do not flicker
        return f"{description:{len(self.validation_description)}}"


class LineProgress(HeartbeatHooks, ProgressBar):
    """One log line per training epoch (its progress-bar metrics and time), one when an
    evaluation starts, one per quarter of it, and "still running" every ``heartbeat_s`` seconds
    within a long batch."""

    def __init__(self, stage: str, marks: int = 4, heartbeat_s: float = 30.0):
        super().__init__()
        self.stage = stage
        self.marks = marks
        self._enabled = True
        self._started = 0.0
        self._next_mark = 1
        self._batch = (0, 0)
        self._heartbeat = Heartbeat(heartbeat_s, self._beat)

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
        log.info(
            "%s: epoch %d%s  %s  (%.1f s)",
            self.stage,
            trainer.current_epoch + 1,
            epochs,
            values,
            time.monotonic() - self._started,
        )

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()
        self._next_mark = 1
        total = trainer.num_test_batches[0] if trainer.num_test_batches else 0
        if self._enabled and total and total != float("inf"):
            log.info("%s: %d batches of clean + attacks", self.stage, int(total))

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        total = trainer.num_test_batches[dataloader_idx] if trainer.num_test_batches else 0
        self._batch = (batch_idx + 1, int(total) if total and total != float("inf") else 0)
        super().on_test_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)

    def _beats(self) -> bool:
        return self._enabled

    def _beat(self, seconds: float) -> None:
        done, total = self._batch
        log.info(
            "%s: batch %d%s still running (%.0f s in this batch)",
            self.stage,
            done,
            f"/{total}" if total else "",
            seconds,
        )

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
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
