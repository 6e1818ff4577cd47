"""Lightning callbacks advlab adds to every fit."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class LossHistory(L.Callback):
    """Per-epoch mean training and validation loss (the paper's Figs 7 and 10), kept in memory.

    It averages the loss each step returns, weighted by batch size, so it does not depend on
    which loggers are configured. Validation runs before the training epoch ends, so each row
    holds both losses of one epoch. The sanity-check validation is ignored.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._sums = {"train": [0.0, 0], "val": [0.0, 0]}
        self._val_loss: float | None = None

    def _add(self, stage: str, outputs: Any, batch: Any) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            n = len(batch[0])
            self._sums[stage][0] += float(loss.detach()) * n
            self._sums[stage][1] += n

    def _mean(self, stage: str) -> float | None:
        total, count = self._sums[stage]
        self._sums[stage] = [0.0, 0]
        return total / count if count else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._add("train", outputs, batch)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self._add("val", outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_loss = self._mean("val")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self.history.append(
            {"epoch": trainer.current_epoch + 1, "train_loss": self._mean("train"), "val_loss": self._val_loss, "lr": lr}
        )
        self._val_loss = None
