"""Defenses in plain PyTorch. The Lightning side (``advlab.pipeline.defended``) trains the
models each defense asks for."""

from advlab.defenses.distillation import DefensiveDistillation, label_dataset, soft_labels

__all__ = ["DefensiveDistillation", "label_dataset", "soft_labels"]
