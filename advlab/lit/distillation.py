"""Lightning module that trains a distillation student against a frozen teacher.

The student's targets are the teacher's soft labels ``softmax(teacher(x) / T)``
(:func:`advlab.defenses.distillation.soft_labels`), computed batch by batch: the teacher is
frozen and in eval mode, so this is the training set labelled once by the teacher, without
holding 50 000 label vectors. The loss is :class:`ClassifierModule`'s cross-entropy on
``student_logits / T`` with those probability targets. The true labels are only logged
(accuracy), never trained on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.defenses.distillation import check_distillation_temperature, freeze, soft_labels
from advlab.lit.classifier import ClassifierModule, OptimizerFactory, SchedulerFactory


class DistillationModule(ClassifierModule):
    """Trains ``model`` (the student) on ``teacher``'s soft labels at ``temperature``.

    The teacher stays in eval mode through Lightning's ``train()`` calls, has no trainable
    parameters, and is left out of the saved checkpoints (they hold the student only, so
    ``model.checkpoint=`` and ``defense.student.model.checkpoint=`` load them directly).
    """

    def __init__(
        self,
        model: nn.Module,
        teacher: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
        temperature: float = 100.0,
    ):
        super().__init__(model, optimizer, scheduler, monitor, check_distillation_temperature(temperature))
        self.teacher = freeze(teacher)

    def train(self, mode: bool = True) -> DistillationModule:
        # Lightning switches the whole module to train mode every epoch: dropout in the teacher
        # would make its soft labels noisy.
        super().train(mode)
        self.teacher.eval()
        return self

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """What the student is trained on: the teacher's ``softmax(logits / T)``."""
        return soft_labels(self.teacher, x, self.temperature)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, labels = batch
        logits = self(x)
        soft = self.targets(x)
        loss = self.loss(logits, soft)
        predicted = logits.argmax(dim=1)
        metrics = {
            "loss": loss,
            "acc": (predicted == labels).float().mean(),
            "teacher_agreement": (predicted == soft.argmax(dim=1)).float().mean(),
        }
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, prog_bar=name != "teacher_agreement", batch_size=len(x))
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
