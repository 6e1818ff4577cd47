"""The Lightning modules of the patch attack: :class:`PatchTraining` optimises a patch with the
classifier frozen (eval mode, no parameter gradients); :class:`PatchEvaluation` measures a
finished patch on held-out images; :func:`train_patch` and :func:`measure_patch` run them (from
a notebook too). The run's patch step (data split, files) is :mod:`advlab.pipeline.patch`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.aggregation import MeanMetric, SumMetric

from advlab.attacks.paste import paste_random, patch_parameter, patch_pixels
from advlab.attacks.patch import PatchAttack, frozen, patch_objective

__all__ = ["PatchEvaluation", "PatchTraining", "default_trainer", "measure_patch", "train_patch"]

# Lightning warns when a module is in eval mode at the start of fit: here that is the point.
_EVAL_MODE_WARNING = r"Found \d+ module\(s\) in eval mode at the start of training"


class PatchTraining(L.LightningModule):
    """Optimises one patch so that ``model`` classifies patched images as ``target_index``.

    The classifier stays in eval mode whatever Lightning toggles (:meth:`train` is pinned), and
    only the patch is handed to the optimiser. Logged per epoch: ``patch/loss`` and
    ``patch/target_rate`` (share of training images, patched, whose top-1 is the target);
    :attr:`history` keeps them for the run's files.
    """

    def __init__(
        self,
        model: nn.Module,
        size: tuple[int, int],
        channels: int,
        target_index: int,
        optimizer: Any,
        scale: Sequence[float] | None = None,
        rotation: float = 0.0,
        loss: str = "ce",
        init_pixels: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model = model
        start = patch_parameter(init_pixels) if init_pixels is not None else torch.zeros(channels, *size)
        self.patch = nn.Parameter(start.float())  # zeros = mid-grey, the reference's start
        self.target_index = int(target_index)
        self.optimizer_factory = optimizer
        self.scale = scale
        self.rotation = float(rotation)
        self.loss_name = loss
        self.epoch_loss = MeanMetric()
        self.epoch_hits = MeanMetric()
        self.history: list[dict[str, float]] = []

    def train(self, mode: bool = True) -> PatchTraining:
        super().train(mode)
        self.model.eval()  # frozen classifier: no dropout, batch-norm statistics untouched
        return self

    def pixels(self) -> torch.Tensor:
        return patch_pixels(self.patch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0]
        # check=False: no [0, 1] check (a device sync) per step; the pipeline checks the data once
        logits = self.model(paste_random(images, self.pixels(), self.scale, self.rotation, check=False))
        loss = patch_objective(logits, self.target_index, self.loss_name)
        hits = (logits.argmax(1) == self.target_index).float()
        self.epoch_loss.update(loss.detach(), weight=len(images))
        self.epoch_hits.update(hits)
        self.log("patch/loss_step", loss.detach(), prog_bar=True, batch_size=len(images))
        return loss

    def on_train_epoch_end(self) -> None:
        loss, rate = float(self.epoch_loss.compute()), float(self.epoch_hits.compute())
        self.epoch_loss.reset()
        self.epoch_hits.reset()
        self.history.append({"epoch": self.current_epoch + 1, "loss": loss, "target_rate": rate})
        self.log_dict({"patch/loss": loss, "patch/target_rate": rate}, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory([self.patch])


class PatchEvaluation(L.LightningModule):
    pixels: torch.Tensor  # a buffer (moves with the module)

    """Measures a finished patch on held-out images.

    Images of the target class are left out (they need no attack). Each remaining image gets
    ``placements`` random placements, each pasted onto a fresh copy of the clean image, so no
    evaluated image ever carries more than one patch. Counted: how often the target is the
    top-1 / among the top-5 predictions (the paper's "accuracy of the patch attack"), the
    accuracy on the true labels with the patch, and the clean accuracy and clean target rate of
    the same images. Placements are drawn from a generator seeded per batch, so a patch
    evaluated twice on the same data gets the same placements.
    """

    COUNTS = (
        "images",
        "trials",
        "target_top1",
        "target_top5",
        "correct_top1",
        "correct_top5",
        "clean_top1",
        "clean_top5",
        "clean_target",
    )

    def __init__(
        self,
        model: nn.Module,
        pixels: torch.Tensor,
        target_index: int,
        num_classes: int,
        placements: int = 4,
        scale: Sequence[float] | None = None,
        rotation: float = 0.0,
        seed: int = 0,
        example_count: int = 0,
    ):
        super().__init__()
        self.model = model
        self.register_buffer("pixels", pixels.detach().float().clone())
        self.target_index = int(target_index)
        self.k = min(5, int(num_classes))
        self.placements = int(placements)
        self.scale = scale
        self.rotation = float(rotation)
        self.seed = int(seed)
        self.example_count = int(example_count)
        self.counts = nn.ModuleDict({name: SumMetric() for name in self.COUNTS})
        self.results: dict[str, Any] = {}
        self.examples: dict[str, Any] = {}

    def _count(self, name: str, hits: torch.Tensor) -> None:
        cast(SumMetric, self.counts[name]).update(hits.float().sum())

    def _tally(self, logits: torch.Tensor, labels: torch.Tensor, prefix: str) -> None:
        top = logits.topk(self.k, dim=1).indices
        self._count(f"{prefix}_top1", top[:, 0] == labels)
        self._count(f"{prefix}_top5", (top == labels[:, None]).any(1))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = batch[0], batch[1]
        keep = labels != self.target_index
        images, labels = images[keep], labels[keep]
        if len(images) == 0:
            return
        target = torch.full_like(labels, self.target_index)
        clean = self.model(images)
        self._count("images", torch.ones_like(labels))
        self._tally(clean, labels, "clean")
        self._count("clean_target", clean.argmax(1) == target)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + batch_idx * 7_919 + self.global_rank)
        for placement in range(self.placements):
            # from the clean images every time
            patched = paste_random(images, self.pixels, self.scale, self.rotation, generator, check=placement == 0)
            logits = self.model(patched)
            self._count("trials", torch.ones_like(labels))
            self._tally(logits, target, "target")
            self._tally(logits, labels, "correct")
            if placement == 0 and not self.examples and self.global_rank == 0 and self.example_count > 0:
                n = min(self.example_count, len(images))
                probabilities = logits[:n].float().softmax(1).topk(self.k, dim=1)
                self.examples = {
                    "images": patched[:n].detach().float().cpu(),
                    "labels": labels[:n].cpu(),
                    "top_classes": probabilities.indices.cpu(),
                    "top_confidences": probabilities.values.cpu(),
                }

    def on_test_epoch_end(self) -> None:
        totals = {name: float(cast(SumMetric, metric).compute()) for name, metric in self.counts.items()}
        images, trials = int(round(totals["images"])), int(round(totals["trials"]))

        def share(name: str, n: int) -> float | None:
            return totals[name] / n if n else None

        self.results = {
            "n_images": images,
            "placements": self.placements,
            "n": trials,
            "correct": int(round(totals["correct_top1"])),
            "target_rate": share("target_top1", trials),
            "target_top5_rate": share("target_top5", trials),
            "top1_acc": share("correct_top1", trials),
            "top5_acc": share("correct_top5", trials),
            "top1_err": None if not trials else 1 - totals["correct_top1"] / trials,
            "top5_err": None if not trials else 1 - totals["correct_top5"] / trials,
            "clean_top1_acc": share("clean_top1", images),
            "clean_top5_acc": share("clean_top5", images),
            "clean_target_rate": share("clean_target", images),
        }


def default_trainer(**kwargs: Any) -> L.Trainer:
    settings = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(**{**settings, **kwargs})


def train_patch(
    model: nn.Module,
    train_loader: DataLoader,
    attack: PatchAttack,
    target_index: int,
    size: tuple[int, int],
    channels: int,
    trainer: L.Trainer | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Train one patch; ``(pixels C×h×w in [0, 1] on the CPU, per-epoch history)``. The model
    comes back with its modes and ``requires_grad`` flags as they were."""
    trainer = trainer or default_trainer(max_epochs=attack.epochs)
    module = PatchTraining(
        model, size, channels, target_index, attack.optimizer, attack.scale, attack.rotation, attack.loss
    )
    with frozen(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EVAL_MODE_WARNING)
        trainer.fit(module, train_dataloaders=train_loader)
    return module.pixels().detach().cpu(), module.history


def measure_patch(
    model: nn.Module,
    held_out_loader: DataLoader,
    pixels: torch.Tensor,
    target_index: int,
    num_classes: int,
    attack: PatchAttack,
    trainer: L.Trainer | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(rates, example images)`` of a patch on held-out images (see :class:`PatchEvaluation`)."""
    trainer = trainer or default_trainer()
    module = PatchEvaluation(
        model,
        pixels,
        target_index,
        num_classes,
        attack.placements,
        attack.scale,
        attack.rotation,
        attack.seed,
        attack.example_count,
    )
    with frozen(model):
        trainer.test(module, dataloaders=held_out_loader, verbose=False)
    return module.results, module.examples
