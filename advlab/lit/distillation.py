"""Lightning module that trains a distillation student against a frozen teacher.

The student's targets are the teacher's soft labels ``softmax(teacher(x) / T)``
(:func:`advlab.defenses.distillation.soft_labels`), computed batch by batch: the teacher is
frozen and in eval mode, so this is the training set labelled once by the teacher, without
holding 50 000 label vectors. The loss is :class:`ClassifierModule`'s cross-entropy on
``student_logits / T`` with those probability targets. The true labels are only logged
(accuracy), never trained on.

``labels="hard"`` reproduces a defect of the code behind the paper's §VI (the reference
protocol, PROTOCOLS.md §VI): its soft-label assignment changes nothing, so its student learns
the hard labels at T and never sees the teacher.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.defenses.distillation import (
    check_distillation_temperature,
    check_student_labels,
    freeze,
    soft_labels,
)
from advlab.errors import AdvlabError
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
        teacher: nn.Module | None,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
        temperature: float = 100.0,
        labels: str = "soft",
        validation_mode: str = "eval",
    ):
        super().__init__(
            model, optimizer, scheduler, monitor, check_distillation_temperature(temperature), validation_mode
        )
        self.labels = check_student_labels(labels)
        if teacher is None and self.labels == "soft":
            raise AdvlabError("a distillation student on soft labels needs a teacher (defense.student_labels=soft)")
        # hard labels: the teacher is never read, so none is kept
        self.teacher = freeze(teacher) if teacher is not None and self.labels == "soft" else None

    def train(self, mode: bool = True) -> DistillationModule:
        # Lightning switches the whole module to train mode every epoch: dropout in the teacher
        # would make its soft labels noisy.
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def targets(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What the student is trained on: the teacher's ``softmax(logits / T)``, or under the
        reference's defect (``labels="hard"``) the true class indices."""
        if self.teacher is None:
            return labels
        return soft_labels(self.teacher, x, self.temperature)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, labels = batch
        logits = self(x)
        soft = self.targets(x, labels)
        loss = self.loss(logits, soft)
        predicted = logits.argmax(dim=1)
        metrics = {"loss": loss, "acc": (predicted == labels).float().mean()}
        if self.teacher is not None:
            metrics["teacher_agreement"] = (predicted == soft.argmax(dim=1)).float().mean()
        self.tally(stage, len(x), **metrics)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
