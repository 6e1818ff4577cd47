"""Evaluate each prepared model clean and under every configured attack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch import nn

from advlab.attacks.base import Attack
from advlab.config import instantiate
from advlab.errors import AdvlabError
from advlab.lit.attack_eval import AttackEvaluation
from advlab.pipeline.trainers import build_trainer


def build_attacks(cfg: DictConfig) -> dict[str, Attack]:
    """``{name: attack}`` from ``cfg.attack`` (one entry per selected config, e.g. ``attack=[fgsm,pgd]``)."""
    attacks = {}
    for name, node in (cfg.get("attack") or {}).items():
        attack = instantiate(node)
        if not isinstance(attack, Attack):
            raise AdvlabError(f"attack.{name} builds {type(attack).__name__}, not an advlab Attack: check its _target_")
        attacks[str(name)] = attack
    return attacks


def evaluate_models(
    cfg: DictConfig,
    models: Mapping[str, nn.Module],
    attacks: Mapping[str, Attack],
    datamodule: L.LightningDataModule,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """``(results per model, example images per model, is_global_zero)``."""
    evaluation = cfg.get("evaluation") or {}
    results, examples = {}, {}
    is_zero = True
    for label, model in models.items():
        module = AttackEvaluation(
            model,
            attacks,
            num_classes=datamodule.num_classes,
            example_count=evaluation.get("example_count", 6),
            target=evaluation.get("target", "random"),
            seed=cfg.get("seed", 0),
        )
        # inference_mode=False: Lightning's default would forbid the attacks' input gradients.
        trainer = build_trainer(cfg, f"eval_{label}", inference_mode=False)
        trainer.test(module, datamodule=datamodule, verbose=False)
        results[label] = module.results
        examples[label] = module.examples
        is_zero = trainer.is_global_zero
    return results, examples, is_zero
