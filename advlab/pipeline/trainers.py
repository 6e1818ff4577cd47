"""Lightning Trainers built from the config, one per stage of a run, with that stage's loggers
(:func:`advlab.tracking.build_loggers`) and progress display (``callbacks.progress_bar``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from advlab.config import instantiate
from advlab.lit.progress import progress_bar
from advlab.tracking import build_loggers

__all__ = ["build_loggers", "build_trainer"]


def build_trainer(
    cfg: DictConfig,
    stage: str,
    callbacks: Sequence[L.Callback] = (),
    **overrides: Any,
) -> L.Trainer:
    """``cfg.trainer`` with this stage's loggers, progress bar and callbacks; ``overrides`` win
    over the config."""
    node = OmegaConf.create(OmegaConf.to_container(cfg.trainer, resolve=True))
    choice = str((cfg.get("callbacks") or {}).get("progress_bar", "auto"))
    callbacks = list(callbacks)
    # enable_progress_bar=false (as the tests set it) switches every bar off, like in Lightning.
    if overrides.get("enable_progress_bar", node.get("enable_progress_bar", True)) is not False:
        bar = progress_bar(choice, stage)
        if bar is None:
            node.enable_progress_bar = False
        else:
            callbacks.append(bar)
    out_dir = Path(cfg.paths.output_dir)
    return instantiate(
        node,
        logger=build_loggers(cfg, stage) or False,
        callbacks=callbacks,
        default_root_dir=str(out_dir),
        **overrides,
    )
