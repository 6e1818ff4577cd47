"""Lightning module for adversarial training (the inner maximisation is plain PyTorch in
:mod:`advlab.defenses.adversarial_training`).

Each training batch: adversarial images from the model in eval mode (no parameter gradients),
then the outer loss with the model back in train mode. Each validation epoch: clean loss and
accuracy on the whole validation split, plus robust accuracy under PGD-10 (L∞, the training eps,
seeded random start) on its first ``robust_val_samples`` images, a fixed subset. The best robust
weights are kept in memory and put back into the model when training ends (Rice et al. 2020:
robust overfitting makes the last epoch not the best one).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from advlab.attacks.pgd import PGD
from advlab.defenses.adversarial_training import AdversarialTraining
from advlab.lit.classifier import ClassifierModule, OptimizerFactory, SchedulerFactory


class AdversarialTrainingModule(ClassifierModule):
    """Trains ``model`` on ``defense``'s adversarial images; logs ``val/robust_acc`` and
    ``val/robust_err`` (1 − robust accuracy, the quantity a min-mode checkpoint monitors)."""

    def __init__(
        self,
        model: torch.nn.Module,
        defense: AdversarialTraining,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/robust_err",
        temperature: float = 1.0,
        robust_val_samples: int = 500,
        restore_best: bool = True,
        seed: int = 0,
        validation_mode: str = "eval",
    ):
        super().__init__(model, optimizer, scheduler, monitor, temperature, validation_mode=validation_mode)
        self.defense = defense
        self.robust_val_samples = int(robust_val_samples)
        self.restore_best = bool(restore_best)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.validator = PGD(eps=defense.eps, steps=10, step_size=2.5 * defense.eps / 10, seed=self.seed)
        self.best_robust_acc: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._val_seen = 0
        self._val_hits = 0

    def _progress(self, batch_idx: int) -> float:
        batches = self.trainer.num_training_batches if self._trainer is not None else 0
        fraction = batch_idx / batches if batches and batches != float("inf") else 0.0
        return self.current_epoch + fraction

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        x_adv = self.defense.adversarial(self.model, x, y, self._progress(batch_idx), self.generator)
        loss, adv_logits = self.defense.loss(self.model, x, x_adv, y)
        accuracy = (adv_logits.argmax(1) == y).float().mean()
        self.log_dict(
            {"train/loss": loss, "train/adv_acc": accuracy},
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(x),
            sync_dist=True,
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_seen = self._val_hits = 0

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "val")
        x, y = batch
        count = min(len(x), max(0, self.robust_val_samples - self._val_seen))
        if count and self.defense.eps > 0:
            # Lightning validates under inference mode; the attack needs input gradients, so it
            # leaves inference mode on copies of the batch (the model's parameters are normal tensors).
            with torch.inference_mode(False), torch.enable_grad():
                xs, ys = x[:count].clone(), y[:count].clone()
                x_adv = self.validator.perturb(self.model, xs, ys, self.defense.eps).x_adv
                with torch.no_grad():
                    self._val_hits += int((self.model(x_adv).argmax(1) == ys).sum())
            self._val_seen += count
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val_seen:
            return
        robust = self._val_hits / self._val_seen
        self.log("val/robust_acc", robust, prog_bar=True)
        self.log("val/robust_err", 1.0 - robust)
        if self.best_robust_acc is None or robust > self.best_robust_acc:
            self.best_robust_acc, self.best_epoch = robust, int(self.current_epoch)
            self._best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def on_fit_end(self) -> None:
        if self.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    def describe(self) -> dict[str, Any]:
        return {
            **self.defense.describe(),
            "robust_val": f"PGD-10 eps {self.defense.eps:g} on the first {self.robust_val_samples} validation images",
            "best_robust_val_acc": self.best_robust_acc,
            "best_epoch": self.best_epoch,
            "restored_best": self.restore_best and self._best_state is not None,
        }
