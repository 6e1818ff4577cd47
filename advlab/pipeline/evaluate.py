"""Evaluate each prepared model clean and under every configured attack.

Per-batch attacks (subclasses of :class:`advlab.attacks.Attack`: FGSM, PGD, CW, …) are
measured together by one :class:`AttackEvaluation` pass per model. A patch
(:class:`advlab.attacks.PatchAttack`) must be trained first: it is a step of its own,
:func:`advlab.pipeline.patch.evaluate_patch`, whose block ``{"settings", "rows", "files"}``
sits beside the per-batch attacks' in the results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from omegaconf import DictConfig
from torch import nn

from advlab.attacks.base import Attack
from advlab.attacks.patch import PatchAttack
from advlab.config import instantiate
from advlab.errors import AdvlabError
from advlab.lit.attack_eval import AttackEvaluation
from advlab.pipeline.patch import evaluate_patch
from advlab.pipeline.trainers import build_trainer


def build_attacks(cfg: DictConfig) -> dict[str, Any]:
    """``{name: attack}`` from ``cfg.attack`` (one entry per selected config, e.g. ``attack=[fgsm,pgd]``)."""
    attacks = {}
    for name, node in (cfg.get("attack") or {}).items():
        attack = instantiate(node)
        if not isinstance(attack, (Attack, PatchAttack)):
            raise AdvlabError(f"attack.{name} builds {type(attack).__name__}, not an advlab attack: check its _target_")
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
    per_batch = {name: a for name, a in attacks.items() if isinstance(a, Attack)}
    patches = {name: a for name, a in attacks.items() if isinstance(a, PatchAttack)}
    results, examples = {}, {}
    is_zero = True
    for label, model in models.items():
        module = AttackEvaluation(
            model,
            per_batch,
            num_classes=datamodule.num_classes,  # type: ignore[attr-defined]  # every advlab datamodule sets it
            example_count=evaluation.get("example_count", 6),
            target=evaluation.get("target", "random"),
            seed=cfg.get("seed", 0),
            datamodule=datamodule,
            channels_last=evaluation.get("channels_last", False),
            attack_autocast=evaluation.get("attack_autocast", False),
            compile=evaluation.get("compile", False),
            model_mode=evaluation.get("model_mode", "eval"),
            clean_wrong_counts_wrong=evaluation.get("clean_wrong_counts_wrong", False),
        )
        # inference_mode=False: Lightning's default would forbid the attacks' input gradients.
        # The module splits the test set across processes itself, without padding duplicates.
        trainer = build_trainer(cfg, f"eval_{label}", inference_mode=False, use_distributed_sampler=False)
        trainer.test(module, verbose=False)
        results[label] = module.results
        examples[label] = module.examples
        is_zero = trainer.is_global_zero
        for name, attack in patches.items():
            results[label]["attacks"][name] = evaluate_patch(cfg, label, model, name, attack, datamodule)
    return results, examples, is_zero
