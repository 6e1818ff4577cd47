"""Attacks in plain PyTorch: ``x_adv = attack(model, x, y)`` on [0, 1] images.

Each attack has a config-built class and a functional form, and follows the contract of
:mod:`advlab.attacks.base` (a sweep of typed :class:`AttackStep` results). None of them mutates
its input, leaves gradients on the model's parameters, or changes the model's train/eval mode.
"""

from advlab.attacks.apgd import APGD, apgd
from advlab.attacks.autoattack import AutoAttack
from advlab.attacks.base import Attack, AttackStep, BoundedAttack
from advlab.attacks.cw import CarliniWagnerL2, cw
from advlab.attacks.fgsm import FGSM, fgsm
from advlab.attacks.paste import paste, paste_random
from advlab.attacks.patch import PatchAttack
from advlab.attacks.pgd import PGD, pgd
from advlab.attacks.square import Square, square_linf

__all__ = [
    "APGD",
    "FGSM",
    "PGD",
    "Attack",
    "AttackStep",
    "AutoAttack",
    "BoundedAttack",
    "CarliniWagnerL2",
    "PatchAttack",
    "Square",
    "apgd",
    "cw",
    "fgsm",
    "paste",
    "paste_random",
    "pgd",
    "square_linf",
]
