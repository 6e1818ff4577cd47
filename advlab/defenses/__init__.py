"""Defenses in plain PyTorch. The Lightning side (``advlab.pipeline.defended``) trains the
models each defense asks for."""

from advlab.defenses.distillation import DefensiveDistillation, label_dataset, soft_labels
from advlab.defenses.none import NoDefense

__all__ = ["DefensiveDistillation", "NoDefense", "label_dataset", "soft_labels"]
