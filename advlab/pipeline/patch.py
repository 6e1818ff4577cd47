"""The run's patch step: for a :class:`~advlab.attacks.patch.PatchAttack`, split the evaluation
images, train (or load) each patch, measure it on the held-out part, and save the patch, its
figures and its table. :func:`preflight_patch` checks targets, sizes and files against the data
before any model is trained.

Data: the images the run is evaluated on (``datamodule.test_dataloader().dataset``, any
DataModule) are split with a seeded generator into a training part and a held-out part, as
the reference protocol splits its 5000 ImageNet images 4500/500.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from advlab.attacks.checks import check_images
from advlab.attacks.patch import PatchAttack, frozen, resolve_target
from advlab.attacks.patch_files import load_patch, save_patch, slug
from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.lit.patch import measure_patch, train_patch
from advlab.pipeline.trainers import build_trainer
from advlab.reports.patch import patch_tables
from advlab.reports.plots import class_label, plot_patches, plot_top5, save_patch_png

log = logging.getLogger(__name__)


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
    n = len(cast(Sized, dataset))
    n_train = int(round(train_split * n))
    if n_train < 1 or n_train >= n:
        raise AdvlabError(
            f"cannot split {n} images {train_split:g}/{1 - train_split:g}: both parts need images "
            "(use more test images or another attack.patch.train_split)"
        )
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


def _num_classes(model: nn.Module, datamodule: Any, class_names: Sequence[str] | None, sample: torch.Tensor) -> int:
    count = getattr(datamodule, "num_classes", None) or (len(class_names) if class_names else None)
    if count:
        return int(count)
    with torch.no_grad(), frozen(model):  # ask the model: the width of its output
        return int(model(sample[None].to(next(model.parameters()).device)).shape[1])


def _plan(
    attack: PatchAttack, class_names: Sequence[str] | None, num_classes: int, image_shape: Sequence[int]
) -> list[dict[str, Any]]:
    """Every patch this job handles (each target × size once), checked before any training."""
    plan: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in attack.patch_files:
        data = load_patch(path)
        stored_name, stored_index = data.get("target_name"), int(data["target_index"])
        # by name when both sides have names (class orders may differ between label sets)
        try:
            index, name = resolve_target(
                stored_name if (stored_name and class_names) else stored_index, class_names, num_classes
            )
        except AdvlabError as error:
            raise AdvlabError(f"patch file {path!r} targets a class this model lacks: {error}") from None
        pixels = data["pixels"]
        size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        if pixels.shape[0] != image_shape[0]:
            raise AdvlabError(f"patch file {path!r} has {pixels.shape[0]} channels, the images have {image_shape[0]}")
        attack.check_image(size, image_shape)
        plan[(path,)] = {
            "target_index": index,
            "target": name or str(index),
            "size": size,
            "pixels": pixels,
            "source": str(path),
            "trained_on": data.get("architecture"),
        }
    if not attack.patch_files:
        for target in attack.targets:
            index, name = resolve_target(target, class_names, num_classes)
            for size in attack.sizes:
                attack.check_image(size, image_shape)
                plan[(index, size)] = {
                    "target_index": index,
                    "target": name or str(index),
                    "size": size,
                    "pixels": None,
                    "source": "trained",
                    "trained_on": None,
                }
    return list(plan.values())


def _top5_panels(examples: dict[str, Any], names: Sequence[str], target: str) -> list[dict[str, Any]]:
    panels = []
    for image, label, classes, confidences in zip(
        examples["images"], examples["labels"], examples["top_classes"], examples["top_confidences"]
    ):
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
    (evaluate_patch checks again against the model's own class names.)"""
    class_names = getattr(datamodule, "class_names", None)
    dataset = evaluation_dataset(datamodule)
    num_classes = getattr(datamodule, "num_classes", None) or (len(class_names) if class_names else None)
    if num_classes:
        _plan(attack, class_names, int(num_classes), tuple(dataset[0][0].shape))


def evaluate_patch(
    cfg: DictConfig, label: str, model: nn.Module, name: str, attack: PatchAttack, datamodule: L.LightningDataModule
) -> dict[str, Any]:
    """Train (or load) every patch the attack asks for and evaluate each on held-out images.

    Writes under ``<output_dir>/patches/<label>/``, per patch ``<model>_<class>_<size>`` (the
    model the patch was trained on): ``.pt`` (pixels and target, for transfer runs) and
    ``.png`` (the patch itself) for trained patches, ``_training.csv`` (loss and target rate
    per epoch) and ``_top5.png`` (patched held-out images with their top-5 bars, the paper's
    Figs 4–6); for the whole job ``patches.png`` (the paper's Fig. 3) and ``table.md`` (top-1
    and top-5 target rates, class × size: the paper's Tables VII–XII).
    """
    class_names = getattr(model, "class_names", None) or getattr(datamodule, "class_names", None)
    dataset = evaluation_dataset(datamodule)
    check_images(dataset[0][0][None])  # the data's pixels in [0, 1] once, not every training step
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
                model,
                loader(train_part, attack.batch_size, True, workers),
                attack,
                item["target_index"],
                size,
                image_shape[0],
                trainer,
            )
        trainer = build_trainer(cfg, f"{stage}_eval")
        metrics, examples = measure_patch(
            model,
            loader(held_out, attack.eval_batch_size, False, workers),
            pixels,
            item["target_index"],
            num_classes,
            attack,
            trainer,
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
                row["patch_file"] = str(
                    save_patch(
                        out_dir / f"{stem}.pt",
                        pixels,
                        item["target_index"],
                        target_name,
                        patch_size=list(size),
                        architecture=architecture,
                    )
                )
                row["patch_png"] = str(save_patch_png(out_dir / f"{stem}.png", pixels))
            if history:
                row["training_csv"] = str(write_csv(out_dir / f"{stem}_training.csv", history))
            if examples:
                title = f"{label}: {item['target']} patch, {size[0]}×{size[1]} px" + (
                    "" if trained else f" (trained on {origin})"
                )
                row["top5_figure"] = str(
                    plot_top5(_top5_panels(examples, names, item["target"]), out_dir / f"{stem}_top5.png", title=title)
                )
        drawn.append({"pixels": pixels, "target": item["target"], "patch_size": row["patch_size"]})
        rows.append(row)
        log.info(
            "%s: %s %s px: target rate top-1 %.4f, top-5 %.4f",
            label,
            item["target"],
            row["patch_size"],
            metrics["target_rate"] or 0,
            metrics["target_top5_rate"] or 0,
        )

    files = {}
    if rows and trainer.is_global_zero:
        files["patches_figure"] = str(plot_patches(drawn, out_dir / "patches.png", title=f"{label}: patches"))
        table_rows = [{"model": label, "architecture": architecture, "attack": name, **r} for r in rows]
        files["patch_table"] = str(write_text(out_dir / "table.md", patch_tables(table_rows) + "\n"))
    return {"settings": attack.settings(), "rows": rows, "files": files}
