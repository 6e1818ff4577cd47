"""Lightning module that trains a classifier with a configurable optimizer and scheduler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import check_model_mode, model_mode
from advlab.attacks.losses import check_temperature

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class ClassifierModule(L.LightningModule):
    """Trains ``model`` with cross-entropy on ``logits / temperature``.

    With ``temperature=1`` and hard labels this is the paper's NLL on log-softmax. Labels may be
    class indices or probability vectors (soft labels), which is all a distillation student
    needs. The scheduler, if any, steps once per epoch on ``monitor`` (ReduceLROnPlateau).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
        temperature: float = 1.0,
        validation_mode: str = "eval",
    ):
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.temperature = check_temperature(temperature)
        # "train": the reference protocol's defect (PROTOCOLS.md §VI), validation with dropout on,
        # which feeds the plateau scheduler a noisier loss; correct runs validate in eval mode
        self.validation_mode = check_model_mode(validation_mode)
        self._sums: dict[str, dict[str, torch.Tensor]] = {}
        self._counts: dict[str, int] = {}

    # epoch metrics shown on the progress bar
    progress_metrics = ("loss", "acc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits / self.temperature, target)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, target = batch
        logits = self(x)
        loss = self.loss(logits, target)
        labels = target.argmax(dim=1) if target.is_floating_point() else target
        self.tally(stage, len(x), loss=loss, acc=(logits.argmax(dim=1) == labels).float().mean())
        return loss

    def tally(self, stage: str, n: int, **means: torch.Tensor) -> None:
        """Add this batch's metric means (weighted by its ``n`` samples) to the epoch's sums.

        The epoch means are logged once, at the epoch's end (:meth:`log_epoch`): ``self.log`` on
        every step costs a visible share of a batch-1 step (BENCHMARKS.md, batch-1 training).
        """
        sums = self._sums.setdefault(stage, {})
        for name, value in means.items():
            weighted = value.detach().float() * n
            sums[name] = sums[name] + weighted if name in sums else weighted
        self._counts[stage] = self._counts.get(stage, 0) + n

    def log_epoch(self, stage: str) -> None:
        sums, count = self._sums.pop(stage, {}), self._counts.pop(stage, 0)
        for name, total in sums.items():
            # sync_dist: under DDP the epoch value is the mean over all processes, not rank 0's share
            self.log(
                f"{stage}/{name}", total / count, on_step=False, on_epoch=True, prog_bar=name in self.progress_metrics,
                batch_size=1, sync_dist=True,
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # logged with the epoch's last batch, so that the progress line (a callback, called
        # before this module's on_train_epoch_end) shows the epoch's training loss
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self.log_epoch("train")

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")  # an epoch cut short (max_steps): what was tallied

    def on_validation_epoch_end(self) -> None:
        self.log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch("test")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        with model_mode(self.model, self.validation_mode):
            return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        # strict=False: a run without validation batches keeps training at the initial rate
        # instead of failing on the missing monitor.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch", "strict": False},
        }
