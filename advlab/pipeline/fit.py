"""Fit one classifier with the configured recipe, or load it from ``model.checkpoint``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig
from torch import nn

from advlab.config import instantiate
from advlab.io import save_torch, write_csv
from advlab.lit.callbacks import LossHistory
from advlab.lit.classifier import ClassifierModule
from advlab.pipeline.preflight import check_max_epochs, check_model_fits
from advlab.pipeline.trainers import build_trainer
from advlab.reports.plots import plot_loss_curves

log = logging.getLogger(__name__)


def fit_classifier(
    cfg: DictConfig,
    datamodule: L.LightningDataModule,
    stage: str,
    model_cfg: DictConfig | None = None,
    training_cfg: DictConfig | None = None,
    temperature: float = 1.0,
    max_epochs: int | None = None,
    module_factory: Callable[..., ClassifierModule] = ClassifierModule,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``model_cfg`` (default ``cfg.model``); if it names a checkpoint, load it and stop
    there, else train it with ``training_cfg`` (default ``cfg.training``) at ``temperature``.

    Training writes, under ``<output_dir>``: Lightning checkpoints in ``checkpoints/<stage>/``,
    the final weights as ``<stage>.pt`` (a plain state dict that ``model.checkpoint=`` takes),
    the per-epoch losses as ``<stage>_loss.csv`` and their plot ``<stage>_loss.png``.
    ``module_factory`` builds the Lightning module (a :class:`ClassifierModule` subclass such
    as the distillation student's, with its extra arguments bound by ``functools.partial``).
    Returns the model in eval mode and what was done, for ``results.json``.
    """
    model_cfg = model_cfg if model_cfg is not None else cfg.model
    training_cfg = training_cfg if training_cfg is not None else cfg.get("training")
    model = instantiate(model_cfg)
    check_model_fits(model, datamodule, f"{stage} model ({model_cfg.get('name') or type(model).__name__})")
    # Given weights (an advlab checkpoint, or pretrained `model.weights` such as torchvision's) are
    # evaluated as they are; so is a model when no training recipe is configured (training=null).
    given = model_cfg.get("checkpoint") or model_cfg.get("weights")
    if given or not training_cfg:
        log.info("%s: %s, no training", stage, f"loaded {given}" if given else "no training recipe")
        checkpoint = model_cfg.get("checkpoint")
        info: dict[str, Any] = {"trained": False, "checkpoint": str(checkpoint) if checkpoint else None}
        if getattr(model, "weights", None) is not None:  # what a model builder says it loaded
            info["weights"] = model.weights
        return model.eval(), info

    epochs = max_epochs if max_epochs is not None else cfg.trainer.get("max_epochs")
    check_max_epochs(epochs, f"defense.{stage}.max_epochs" if max_epochs is not None else "trainer.max_epochs")
    out_dir = Path(cfg.paths.output_dir)
    module = module_factory(
        model,
        optimizer=instantiate(training_cfg.optimizer),
        scheduler=instantiate(training_cfg.scheduler) if training_cfg.get("scheduler") else None,
        monitor=training_cfg.get("monitor", "val/loss"),
        temperature=temperature,
        **({"validation_mode": training_cfg.validation_mode} if training_cfg.get("validation_mode") else {}),
    )
    history = LossHistory()
    checkpoints = ModelCheckpoint(
        dirpath=out_dir / "checkpoints" / stage,
        filename="best",
        monitor=training_cfg.get("monitor", "val/loss"),
        save_last=True,
    )
    overrides = {"max_epochs": max_epochs} if max_epochs is not None else {}
    trainer = build_trainer(cfg, stage, callbacks=[history, checkpoints], **overrides)
    trainer.fit(module, datamodule=datamodule)

    info: dict[str, Any] = {"trained": True, "epochs": trainer.current_epoch, "history": history.history}
    if trainer.is_global_zero:
        weights = save_torch(out_dir / f"{stage}.pt", {k: v.cpu() for k, v in model.state_dict().items()})
        info["checkpoint"] = str(weights)
        info["best_checkpoint"] = checkpoints.best_model_path or None
        if history.history:
            write_csv(out_dir / f"{stage}_loss.csv", history.history)
            info["loss_plot"] = str(plot_loss_curves(history.history, out_dir / f"{stage}_loss.png", title=f"{stage}: loss per epoch"))
    return model.eval(), info
