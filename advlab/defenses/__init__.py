"""Defenses in plain PyTorch. The Lightning side (``advlab.pipeline.defended``) trains the
models each defense asks for."""

from advlab.defenses.none import NoDefense

__all__ = ["NoDefense"]
