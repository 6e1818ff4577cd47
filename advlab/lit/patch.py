"""Train an adversarial patch with Lightning and measure it on held-out images.

:class:`PatchTraining` optimises the patch with the classifier frozen (eval mode, no parameter
gradients); :class:`PatchEvaluation` measures a finished patch. :func:`evaluate_patch` is the
pipeline's evaluator for :class:`advlab.attacks.patch.PatchAttack` (see
:mod:`advlab.pipeline.evaluate`): it splits the data, trains (or loads) each patch, evaluates
it on the held-out images only, and saves the patch, its figures and its table.

Data: the images the run is evaluated on (``datamodule.test_dataloader().dataset``, any
DataModule) are split with a seeded generator into a training part and a held-out part, as
the reference protocol splits its 5000 ImageNet images 4500/500.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.aggregation import MeanMetric, SumMetric

from advlab.attacks.patch import (
    PatchAttack,
    frozen,
    load_patch,
    paste_random,
    patch_objective,
    patch_parameter,
    patch_pixels,
    resolve_target,
    save_patch,
    slug,
)
from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.reports.plots import class_label

log = logging.getLogger(__name__)

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
        logits = self.model(paste_random(images, self.pixels(), self.scale, self.rotation))
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
        self.counts[name].update(hits.float().sum())

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
            patched = paste_random(images, self.pixels, self.scale, self.rotation, generator)  # from the clean images every time
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
        totals = {name: float(metric.compute()) for name, metric in self.counts.items()}
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


# --- data -------------------------------------------------------------------------------------


def evaluation_dataset(datamodule: L.LightningDataModule) -> Dataset:
    """The images the run evaluates on: ``datamodule.test_dataloader().dataset``."""
    try:
        loader = datamodule.test_dataloader()
    except Exception:  # a DataModule that builds its datasets in setup() only
        datamodule.prepare_data()
        datamodule.setup("test")
        loader = datamodule.test_dataloader()
    return loader.dataset


def split_held_out(dataset: Dataset, train_split: float, seed: int) -> tuple[Subset, Subset]:
    """Seeded ``(training part, held-out part)``; the held-out part is what the patch is judged on."""
    n = len(dataset)
    n_train = int(round(train_split * n))
    if n_train < 1 or n_train >= n:
        raise AdvlabError(f"cannot split {n} images {train_split:g}/{1 - train_split:g}: both parts need images (use more test images or another attack.patch.train_split)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[:n_train]), Subset(dataset, order[n_train:])


def loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


# --- steps callable from notebooks ------------------------------------------------------------


def default_trainer(**kwargs: Any) -> L.Trainer:
    settings = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False, "num_sanity_val_steps": 0}
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
    module = PatchTraining(model, size, channels, target_index, attack.optimizer, attack.scale, attack.rotation, attack.loss)
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
        model, pixels, target_index, num_classes, attack.placements, attack.scale, attack.rotation, attack.seed, attack.example_count
    )
    with frozen(model):
        trainer.test(module, dataloaders=held_out_loader, verbose=False)
    return module.results, module.examples


# --- the pipeline's evaluator -----------------------------------------------------------------


def _num_classes(model: nn.Module, datamodule: Any, class_names: Sequence[str] | None, sample: torch.Tensor) -> int:
    count = getattr(datamodule, "num_classes", None) or (len(class_names) if class_names else None)
    if count:
        return int(count)
    with torch.no_grad(), frozen(model):  # ask the model: the width of its output
        return int(model(sample[None].to(next(model.parameters()).device)).shape[1])


def _plan(attack: PatchAttack, class_names: Sequence[str] | None, num_classes: int, image_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Every patch this job handles (each target × size once), checked before any training."""
    plan: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in attack.patch_files:
        data = load_patch(path)
        stored_name, stored_index = data.get("target_name"), int(data["target_index"])
        # by name when both sides have names (class orders may differ between label sets)
        try:
            index, name = resolve_target(stored_name if (stored_name and class_names) else stored_index, class_names, num_classes)
        except AdvlabError as error:
            raise AdvlabError(f"patch file {path!r} targets a class this model lacks: {error}") from None
        pixels = data["pixels"]
        size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        if pixels.shape[0] != image_shape[0]:
            raise AdvlabError(f"patch file {path!r} has {pixels.shape[0]} channels, the images have {image_shape[0]}")
        attack.check_image(size, image_shape)
        plan[(path,)] = {"target_index": index, "target": name or str(index), "size": size, "pixels": pixels, "source": str(path), "trained_on": data.get("architecture")}
    if not attack.patch_files:
        for target in attack.targets:
            index, name = resolve_target(target, class_names, num_classes)
            for size in attack.sizes:
                attack.check_image(size, image_shape)
                plan[(index, size)] = {"target_index": index, "target": name or str(index), "size": size, "pixels": None, "source": "trained", "trained_on": None}
    return list(plan.values())


def _top5_panels(examples: dict[str, Any], names: Sequence[str], target: str) -> list[dict[str, Any]]:
    panels = []
    for image, label, classes, confidences in zip(examples["images"], examples["labels"], examples["top_classes"], examples["top_confidences"]):
        predicted = class_label(names, int(classes[0]))
        panels.append(
            {
                "image": image,
                "title": f"true: {class_label(names, int(label))} → {predicted}",
                "names": [class_label(names, int(c)) for c in classes],
                "confidences": confidences.tolist(),
                "highlight": target,
            }
        )
    return panels


def _size_label(size: tuple[int, int]) -> int | str:
    return size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}"


def preflight_patch(cfg: DictConfig, name: str, attack: PatchAttack, datamodule: L.LightningDataModule) -> None:
    """Check the targets, patch sizes and patch files against the data before any model is
    trained, so a typo in a class name fails in seconds, not after the classifier's training.
    (The evaluator checks again against the model's own class names.)"""
    class_names = getattr(datamodule, "class_names", None)
    dataset = evaluation_dataset(datamodule)
    num_classes = getattr(datamodule, "num_classes", None) or (len(class_names) if class_names else None)
    if num_classes:
        _plan(attack, class_names, int(num_classes), tuple(dataset[0][0].shape))


def evaluate_patch(cfg: DictConfig, label: str, model: nn.Module, name: str, attack: PatchAttack, datamodule: L.LightningDataModule) -> dict[str, Any]:
    """Train (or load) every patch the attack asks for and evaluate each on held-out images.

    Writes under ``<output_dir>/patches/<label>/``, per patch ``<model>_<class>_<size>`` (the
    model the patch was trained on): ``.pt`` (pixels and target, for transfer runs) and
    ``.png`` (the patch itself) for trained patches, ``_training.csv`` (loss and target rate
    per epoch) and ``_top5.png`` (patched held-out images with their top-5 bars, the paper's
    Figs 4–6); for the whole job ``patches.png`` (the paper's Fig. 3) and ``table.md`` (top-1
    and top-5 target rates, class × size: the paper's Tables VII–XII).
    """
    from advlab.pipeline.trainers import build_trainer
    from advlab.reports.patch import patch_tables
    from advlab.reports.plots import plot_patches, plot_top5, save_patch_png

    class_names = getattr(model, "class_names", None) or getattr(datamodule, "class_names", None)
    dataset = evaluation_dataset(datamodule)
    image_shape = tuple(dataset[0][0].shape)
    num_classes = _num_classes(model, datamodule, class_names, dataset[0][0])
    plan = _plan(attack, class_names, num_classes, image_shape)
    train_part, held_out = split_held_out(dataset, attack.train_split, attack.split_seed)
    workers = int(getattr(datamodule, "num_workers", 0) or 0)
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    out_dir = Path(cfg.paths.output_dir) / "patches" / label
    architecture = (cfg.get("model") or {}).get("name")

    rows, drawn = [], []
    for item in plan:
        size = item["size"]
        trained = item["source"] == "trained"
        origin = (architecture if trained else item["trained_on"]) or "model"
        stem = f"{slug(origin)}_{slug(item['target'])}_{_size_label(size)}"
        stage = f"patch_{label}_{stem}"
        history: list[dict[str, float]] = []
        pixels = item["pixels"]
        if pixels is None:
            log.info("%s: training a %d×%d patch for %r on %d images", label, *size, item["target"], len(train_part))
            trainer = build_trainer(cfg, stage, max_epochs=attack.epochs, enable_checkpointing=False)
            pixels, history = train_patch(
                model, loader(train_part, attack.batch_size, True, workers), attack, item["target_index"], size, image_shape[0], trainer
            )
        trainer = build_trainer(cfg, f"{stage}_eval")
        metrics, examples = measure_patch(
            model, loader(held_out, attack.eval_batch_size, False, workers), pixels, item["target_index"], num_classes, attack, trainer
        )
        row: dict[str, Any] = {
            "target": item["target"],
            "target_index": item["target_index"],
            "patch_size": _size_label(size),
            "source": item["source"],
            "trained_on": architecture if trained else item["trained_on"],
            "train_images": len(train_part) if trained else None,
            **metrics,
        }
        if history:
            row.update({"final_loss": history[-1]["loss"], "final_train_target_rate": history[-1]["target_rate"]})
        if trainer.is_global_zero:
            out_dir.mkdir(parents=True, exist_ok=True)
            if trained:  # a loaded patch is already on disk: its row names the file it came from
                target_name = item["target"] if class_names else None
                row["patch_file"] = str(save_patch(out_dir / f"{stem}.pt", pixels, item["target_index"], target_name, patch_size=list(size), architecture=architecture))
                row["patch_png"] = str(save_patch_png(out_dir / f"{stem}.png", pixels))
            if history:
                row["training_csv"] = str(write_csv(out_dir / f"{stem}_training.csv", history))
            if examples:
                title = f"{label}: {item['target']} patch, {size[0]}×{size[1]} px" + ("" if trained else f" (trained on {origin})")
                row["top5_figure"] = str(plot_top5(_top5_panels(examples, names, item["target"]), out_dir / f"{stem}_top5.png", title=title))
        drawn.append({"pixels": pixels, "target": item["target"], "patch_size": row["patch_size"]})
        rows.append(row)
        log.info("%s: %s %s px: target rate top-1 %.4f, top-5 %.4f", label, item["target"], row["patch_size"], metrics["target_rate"] or 0, metrics["target_top5_rate"] or 0)

    files = {}
    if rows and trainer.is_global_zero:
        files["patches_figure"] = str(plot_patches(drawn, out_dir / "patches.png", title=f"{label}: patches"))
        table_rows = [{"model": label, "architecture": architecture, "attack": name, **r} for r in rows]
        files["patch_table"] = str(write_text(out_dir / "table.md", patch_tables(table_rows) + "\n"))
    return {"settings": attack.settings(), "rows": rows, "files": files}
