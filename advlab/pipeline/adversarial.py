"""``defense=adversarial_training``: fit (or load) an adversarially trained classifier.

Options of the defense config beyond the method: ``compare_undefended`` also fits the
undefended model (``model``, ``training``), and ``distillation`` (a distillation defense
config, as the leaderboard composes it) also fits the distilled student — so one run puts
undefended, distilled and adversarially trained networks side by side.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from advlab.config import instantiate
from advlab.defenses.adversarial_training import AdversarialTraining
from advlab.errors import AdvlabError
from advlab.lit.adversarial_training import AdversarialTrainingModule
from advlab.pipeline.defended import undefended
from advlab.pipeline.fit import fit_classifier

log = logging.getLogger(__name__)


def adversarial_training(
    cfg: DictConfig, datamodule: L.LightningDataModule, **options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The procedure ``defense=adversarial_training`` names; ``options`` are ``cfg.defense``'s keys,
    read from ``cfg.defense`` itself (the same values)."""
    spec = cfg.defense
    defense = AdversarialTraining(
        method=spec.method,
        eps=spec.eps,
        steps=spec.get("steps", 10),
        step_size=spec.get("step_size"),
        beta=spec.get("beta", 6.0),
        ramp_epochs=spec.get("ramp_epochs", 0.0),
    )
    models: dict[str, Any] = {}
    info: dict[str, Any] = {}
    if spec.get("distillation"):
        # a whole distillation defense config (its own _target_): it also fits the undefended model
        models, info = instantiate(spec.distillation)(cfg, datamodule)
    elif spec.get("compare_undefended", False):
        models, info = undefended(cfg, datamodule)
        info["undefended"] = {**info["undefended"], "defense": "none"}

    model_cfg = spec.get("model") or cfg.model
    if spec.get("checkpoint"):  # trained weights (adversarial.pt of an earlier run): evaluate, no training
        model_cfg = OmegaConf.merge(model_cfg, {"checkpoint": spec.checkpoint})
    module: list[AdversarialTrainingModule] = []

    def factory(model: Any, **kwargs: Any) -> AdversarialTrainingModule:
        # fit_classifier passes the model and optimizer/scheduler/monitor/temperature
        built = AdversarialTrainingModule(
            model,
            defense=defense,
            robust_val_samples=spec.get("robust_val_samples", 500),
            restore_best=spec.get("restore_best", True),
            seed=cfg.get("seed", 0),
            **kwargs,
        )
        module.append(built)
        return built

    try:
        model, fit_info = fit_classifier(
            cfg,
            datamodule,
            stage="adversarial",
            model_cfg=model_cfg,
            training_cfg=spec.get("training") or cfg.training,
            max_epochs=spec.get("max_epochs"),
            module_factory=partial(factory),
        )
    except AdvlabError as error:
        raise AdvlabError(f"adversarial (defense.adversarial): {error}") from None
    described = module[0].describe() if module else {**defense.describe(), "trained": False}
    models["adversarial"] = model
    info["adversarial"] = {
        **fit_info,
        **described,
        "architecture": model_cfg.get("name"),
    }
    log.info("adversarial training: %s", described)
    return models, info
