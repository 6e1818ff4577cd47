"""Lightning Trainers and loggers built from the config, one set per stage of a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from advlab.config import instantiate


def build_loggers(cfg: DictConfig, stage: str) -> list[Any]:
    """The loggers chosen with ``logger=…``, each writing under its own ``stage`` version so the
    teacher, the student and the evaluation of one run do not overwrite each other."""
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
        with open_dict(node):
            if str(node._target_).endswith(("CSVLogger", "TensorBoardLogger")):
                node.version = stage
        loggers.append(instantiate(node))
    return loggers


def build_trainer(
    cfg: DictConfig,
    stage: str,
    callbacks: Sequence[L.Callback] = (),
    **overrides: Any,
) -> L.Trainer:
    """``cfg.trainer`` with this stage's loggers and callbacks; ``overrides`` win over the config."""
    out_dir = Path(cfg.paths.output_dir)
    return instantiate(
        cfg.trainer,
        logger=build_loggers(cfg, stage) or False,
        callbacks=list(callbacks),
        default_root_dir=str(out_dir),
        **overrides,
    )
