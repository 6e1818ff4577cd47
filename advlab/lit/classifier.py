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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits / self.temperature, target)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, target = batch
        logits = self(x)
        loss = self.loss(logits, target)
        labels = target.argmax(dim=1) if target.is_floating_point() else target
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        # sync_dist: under DDP the epoch value is the mean over all processes, not rank 0's share
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

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
