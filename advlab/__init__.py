"""advlab: adversarial-robustness lab (attacks, defenses, Hydra + Lightning experiments)."""

__version__ = "0.1.0"
