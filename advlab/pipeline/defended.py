"""The models a run evaluates, as the chosen defense asks: ``{label: classifier}``.

A defense config (``conf/defense/<name>.yaml``) names its *procedure* as ``_target_`` with
``_partial_: true`` and ``_recursive_: false``; the procedure is called as
``procedure(cfg, datamodule)`` with the config's other keys as keyword arguments, and returns
``(models, info)``. A new defense is one procedure (here or in its own module) and one YAML; the
plain-PyTorch parts live in ``advlab.defenses``. A model's info may name its own ``defense`` (a
distillation run also evaluates the undefended baseline, whose defense is ``none``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch import nn

from advlab.config import instantiate
from advlab.defenses.distillation import DefensiveDistillation
from advlab.errors import AdvlabError
from advlab.lit.distillation import DistillationModule
from advlab.pipeline.fit import fit_classifier

log = logging.getLogger(__name__)

Models = dict[str, nn.Module]
Procedure = Callable[[DictConfig, L.LightningDataModule], tuple[Models, dict[str, Any]]]


def undefended(cfg: DictConfig, datamodule: L.LightningDataModule, name: str = "none") -> tuple[Models, dict[str, Any]]:
    """No defense (``defense=none``): the model as the recipe trains it, or as loaded."""
    model, info = fit_classifier(cfg, datamodule, stage="undefended")
    return {"undefended": model}, {"undefended": info}


def _fit_stage(
    stage: str, part: DictConfig, cfg: DictConfig, datamodule: L.LightningDataModule, **kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """fit_classifier for one model of the defense (``part``: its ``model``, ``training`` and
    ``max_epochs``), whose one-line errors say which model they are about."""
    try:
        return fit_classifier(
            cfg,
            datamodule,
            stage=stage,
            model_cfg=part.model,
            training_cfg=part.training,
            max_epochs=part.get("max_epochs"),
            **kwargs,
        )
    except AdvlabError as error:
        raise AdvlabError(f"{stage} (defense.{stage}): {error}") from None


def distillation(
    cfg: DictConfig,
    datamodule: L.LightningDataModule,
    *,
    teacher: DictConfig,
    student: DictConfig,
    temperature: float = 100.0,
    compare_undefended: bool = True,
    evaluate_teacher: bool = False,
    student_labels: str = "soft",
    name: str = "distillation",
) -> tuple[Models, dict[str, Any]]:
    """Defensive distillation (``defense=distillation``, PROTOCOLS.md §VI).

    Teacher trained at ``defense.temperature`` (or loaded from ``defense.teacher.model.checkpoint``),
    student trained at the same T on the teacher's soft labels (or loaded from
    ``defense.student.model.checkpoint``, then no teacher is needed), deployed at T = 1 as
    ``distilled``. With ``defense.compare_undefended`` the undefended model (``model``,
    ``training``) is fitted too, for the side-by-side tables; ``defense.evaluate_teacher`` adds
    the teacher itself. ``student_labels=hard`` is the reference protocol's defect
    (docs/reference_protocol.md): the student learns the true labels at T and no teacher is trained.
    """
    # T <= 0 or unknown student labels fail here, before any training
    defense = DefensiveDistillation(temperature, student_labels)
    models: Models = {}
    info: dict[str, Any] = {}
    if compare_undefended:
        models, info = undefended(cfg, datamodule)
        info["undefended"] = {**info["undefended"], "defense": "none"}

    common = {"temperature": defense.temperature}
    teacher_model, teacher_info = None, None
    # a student on hard labels (the reference's defect) never reads a teacher: none is trained
    needs_teacher = not student.model.get("checkpoint") and defense.student_labels == "soft"
    if needs_teacher or evaluate_teacher:
        teacher_model, teacher_info = _fit_stage("teacher", teacher, cfg, datamodule, **common)
    if student.model.get("checkpoint"):
        log.info("distillation: student loaded from %s, teacher not needed", student.model.checkpoint)
        factory: Any = None
    else:
        # fitted above when the student needs its soft labels
        factory = partial(DistillationModule, teacher=teacher_model, labels=defense.student_labels)
    student_model, student_info = _fit_stage(
        "student", student, cfg, datamodule, **common, **({"module_factory": factory} if factory else {})
    )
    # The student's own record first (its loss plot is the paper's Fig. 10), then the defense.
    models["distilled"] = student_model
    info["distilled"] = {
        **student_info,
        **defense.describe(),
        "architecture": student.model.get("name"),
        "teacher": teacher_info,
    }
    if evaluate_teacher and teacher_model is not None:
        models["teacher"] = teacher_model
        info["teacher"] = {
            **(teacher_info or {}),
            "defense": "distillation teacher",
            "temperature": defense.temperature,
            "architecture": teacher.model.get("name"),
        }
    return models, info


def prepare_models(cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[Models, dict[str, Any]]:
    """Call the procedure the defense config names (``_target_``) as ``procedure(cfg, datamodule)``."""
    node = cfg.get("defense")
    if not node or "_target_" not in node:
        raise AdvlabError("the defense config has no _target_: pick one with defense=none or defense=distillation")
    procedure = instantiate(node)
    if not callable(procedure):
        raise AdvlabError(f"defense._target_ {node._target_!r} is not a procedure: give it _partial_: true")
    return procedure(cfg, datamodule)
