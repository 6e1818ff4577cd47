"""Evaluate each prepared model clean and under every configured attack.

Per-batch attacks (subclasses of :class:`advlab.attacks.Attack`: FGSM, PGD, …) are measured
together by one :class:`AttackEvaluation` pass per model. An attack that needs its own
procedure (a patch must be trained first) names it in a class attribute ``evaluator``: the
dotted path of ``fn(cfg, label, model, name, attack, datamodule) -> block``, where ``block``
is ``{"settings": {...}, "rows": [{...}, ...]}`` like the per-batch attacks produce. The
attack class stays plain PyTorch; the evaluator may use Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from hydra.utils import get_method as locate
from omegaconf import DictConfig
from torch import nn

from advlab.attacks.base import Attack
from advlab.config import instantiate
from advlab.errors import AdvlabError
from advlab.lit.attack_eval import AttackEvaluation
from advlab.pipeline.trainers import build_trainer


def build_attacks(cfg: DictConfig) -> dict[str, Any]:
    """``{name: attack}`` from ``cfg.attack`` (one entry per selected config, e.g. ``attack=[fgsm,pgd]``)."""
    attacks = {}
    for name, node in (cfg.get("attack") or {}).items():
        attack = instantiate(node)
        if not isinstance(attack, Attack) and not getattr(attack, "evaluator", None):
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
    own_procedure = {name: a for name, a in attacks.items() if not isinstance(a, Attack)}
    results, examples = {}, {}
    is_zero = True
    for label, model in models.items():
        module = AttackEvaluation(
            model,
            per_batch,
            num_classes=datamodule.num_classes,
            example_count=evaluation.get("example_count", 6),
            target=evaluation.get("target", "random"),
            seed=cfg.get("seed", 0),
            datamodule=datamodule,
            channels_last=evaluation.get("channels_last", False),
            attack_autocast=evaluation.get("attack_autocast", False),
            compile=evaluation.get("compile", False),
        )
        # inference_mode=False: Lightning's default would forbid the attacks' input gradients.
        # The module splits the test set across processes itself, without padding duplicates.
        trainer = build_trainer(cfg, f"eval_{label}", inference_mode=False, use_distributed_sampler=False)
        trainer.test(module, verbose=False)
        results[label] = module.results
        examples[label] = module.examples
        is_zero = trainer.is_global_zero
        for name, attack in own_procedure.items():
            evaluator = locate(attack.evaluator)
            results[label]["attacks"][name] = evaluator(cfg, label, model, name, attack, datamodule)
    return results, examples, is_zero
