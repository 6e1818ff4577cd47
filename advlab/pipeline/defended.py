"""The models a run evaluates, as the chosen defense asks: ``{label: classifier}``.

Each defense name maps to a *procedure* ``(cfg, datamodule) -> (models, info)``. A new defense
adds one entry to :data:`PROCEDURES` (the plain-PyTorch parts live in ``advlab.defenses``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch import nn

from advlab.errors import AdvlabError
from advlab.pipeline.fit import fit_classifier

Models = dict[str, nn.Module]
Procedure = Callable[[DictConfig, L.LightningDataModule], tuple[Models, dict[str, Any]]]


def undefended(cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[Models, dict[str, Any]]:
    model, info = fit_classifier(cfg, datamodule, stage="undefended")
    return {"undefended": model}, {"undefended": info}


PROCEDURES: dict[str, Procedure] = {"none": undefended}


def prepare_models(cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[Models, dict[str, Any]]:
    name = cfg.defense.name
    if name not in PROCEDURES:
        raise AdvlabError(f"unknown defense {name!r}: use one of {', '.join(sorted(PROCEDURES))} (defense=<name>)")
    return PROCEDURES[name](cfg, datamodule)
