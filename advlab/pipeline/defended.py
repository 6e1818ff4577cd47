"""The models a run evaluates, as the chosen defense asks: ``{label: classifier}``.

Each defense name maps to a *procedure* ``(cfg, datamodule) -> (models, info)``. A new defense
adds one entry to :data:`PROCEDURES` (the plain-PyTorch parts live in ``advlab.defenses``).
A model's info may name its own ``defense`` (a distillation run also evaluates the undefended
baseline, whose defense is ``none``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch import nn

from advlab.defenses.distillation import DefensiveDistillation
from advlab.errors import AdvlabError
from advlab.lit.distillation import DistillationModule
from advlab.pipeline.fit import fit_classifier

log = logging.getLogger(__name__)

Models = dict[str, nn.Module]
Procedure = Callable[[DictConfig, L.LightningDataModule], tuple[Models, dict[str, Any]]]


def undefended(cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[Models, dict[str, Any]]:
    model, info = fit_classifier(cfg, datamodule, stage="undefended")
    return {"undefended": model}, {"undefended": info}


def _fit_stage(stage: str, *args: Any, **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """fit_classifier whose one-line errors say which model of the defense they are about."""
    try:
        return fit_classifier(*args, stage=stage, **kwargs)
    except AdvlabError as error:
        raise AdvlabError(f"{stage} (defense.{stage}): {error}") from None


def distillation(cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[Models, dict[str, Any]]:
    """Defensive distillation (``defense=distillation``, PROTOCOLS.md §VI).

    Teacher trained at ``defense.temperature`` (or loaded from ``defense.teacher.model.checkpoint``),
    student trained at the same T on the teacher's soft labels (or loaded from
    ``defense.student.model.checkpoint``, then no teacher is needed), deployed at T = 1 as
    ``distilled``. With ``defense.compare_undefended`` the undefended model (``model``,
    ``training``) is fitted too, for the side-by-side tables; ``defense.evaluate_teacher`` adds
    the teacher itself.
    """
    spec = cfg.defense
    defense = DefensiveDistillation(spec.temperature)  # T <= 0 fails here, before any training
    models: Models = {}
    info: dict[str, Any] = {}
    if spec.get("compare_undefended", True):
        models, info = undefended(cfg, datamodule)
        info["undefended"] = {**info["undefended"], "defense": "none"}

    common = {"temperature": defense.temperature}
    teacher, teacher_info = None, None
    if not spec.student.model.get("checkpoint") or spec.get("evaluate_teacher", False):
        teacher, teacher_info = _fit_stage(
            "teacher", cfg, datamodule, model_cfg=spec.teacher.model, training_cfg=spec.teacher.training,
            max_epochs=spec.teacher.get("max_epochs"), **common,
        )
    if spec.student.model.get("checkpoint"):
        log.info("distillation: student loaded from %s, teacher not needed", spec.student.model.checkpoint)
        factory: Any = None
    else:
        factory = partial(DistillationModule, teacher=teacher)
    student, student_info = _fit_stage(
        "student", cfg, datamodule, model_cfg=spec.student.model, training_cfg=spec.student.training,
        max_epochs=spec.student.get("max_epochs"), **common, **({"module_factory": factory} if factory else {}),
    )
    # The student's own record first (its loss plot is the paper's Fig. 10), then the defense.
    models["distilled"] = student
    info["distilled"] = {**student_info, **defense.describe(), "architecture": spec.student.model.get("name"), "teacher": teacher_info}
    if spec.get("evaluate_teacher", False):
        models["teacher"] = teacher
        info["teacher"] = {
            **teacher_info, "defense": "distillation teacher", "temperature": defense.temperature,
            "architecture": spec.teacher.model.get("name"),
        }
    return models, info


def _adversarial_training(cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[Models, dict[str, Any]]:
    from advlab.pipeline.adversarial import adversarial_training  # imports this module back

    return adversarial_training(cfg, datamodule)


PROCEDURES: dict[str, Procedure] = {
    "none": undefended,
    "distillation": distillation,
    "adversarial_training": _adversarial_training,
}


def prepare_models(cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[Models, dict[str, Any]]:
    name = cfg.defense.name
    if name not in PROCEDURES:
        raise AdvlabError(f"unknown defense {name!r}: use one of {', '.join(sorted(PROCEDURES))} (defense=<name>)")
    return PROCEDURES[name](cfg, datamodule)
