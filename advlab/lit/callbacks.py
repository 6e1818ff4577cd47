"""Lightning callbacks advlab adds to every fit."""

from __future__ import annotations

import lightning as L


class LossHistory(L.Callback):
    """Per-epoch training and validation loss (the paper's Figs 7 and 10), kept in memory.

    It keeps what the module logs (``train/loss`` and ``val/loss``, epoch means weighted by batch
    size), read from the trainer's callback metrics when a training epoch ends — after that
    epoch's validation — so it computes nothing itself and does not depend on which loggers are
    configured. An epoch without validation gets ``val_loss: None``.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float | None]] = []
        self._validated = False

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics

        def value(key: str) -> float | None:
            return float(metrics[key]) if key in metrics else None

        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self.history.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_loss": value("train/loss"),
                "val_loss": value("val/loss") if self._validated else None,
                "lr": lr,
            }
        )
        self._validated = False
