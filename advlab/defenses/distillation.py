"""Defensive distillation (Papernot et al., 2016), the plain-PyTorch parts.

1. A teacher is trained with ``softmax(logits / T)``.
2. The training set is labelled with the teacher's soft labels ``softmax(teacher_logits / T)``.
3. A student is trained at the same ``T`` on those soft labels.
4. The student is deployed at ``T = 1``: its plain logits, so its softmax is ``T``× sharper than
   during training.

Step 2 is the one the code behind the paper's §VI gets wrong (PROTOCOLS.md §VI): its soft-label
assignment changes nothing and the "student" learns hard labels. :func:`soft_labels` is the
single place where advlab computes them; the Lightning side (``advlab.lit.distillation``) calls
it for every training batch with the frozen teacher.

Step 4 is also where the defence's apparent strength comes from: logits about ``T``× larger
saturate the softmax, the cross-entropy gradient underflows to exactly zero and FGSM on
``log_softmax(logits)`` cannot move. Attacking ``logits / T`` or the logit margin undoes that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import eval_mode
from advlab.attacks.losses import check_temperature
from advlab.errors import AdvlabError


def check_distillation_temperature(temperature: float) -> float:
    return check_temperature(temperature, "defense.temperature", "e.g. defense.temperature=100 (the paper's T)")


STUDENT_LABELS = ("soft", "hard")


def check_student_labels(labels: str) -> str:
    """``soft`` (distillation) or ``hard``: the reference protocol's defect, where the public
    code's soft-label assignment is a no-op and its student learns the true labels at T."""
    if labels not in STUDENT_LABELS:
        raise AdvlabError(f"defense.student_labels must be 'soft' or 'hard' (the reference's defect), got {labels!r}")
    return labels


def soft_labels(teacher: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(teacher(x) / T)`` per sample (rows sum to 1), from the teacher in eval mode
    (no dropout noise) and without gradients; the teacher's modes are restored afterwards."""
    temperature = check_distillation_temperature(temperature)
    with torch.no_grad(), eval_mode(teacher):
        logits = teacher(x)
    return F.softmax(logits.float() / temperature, dim=1)


def label_dataset(teacher: nn.Module, images: torch.Tensor, temperature: float, batch_size: int = 1000) -> torch.Tensor:
    """Soft labels for a whole image tensor, batch by batch (step 2 for a notebook user)."""
    return torch.cat([soft_labels(teacher, images[i : i + batch_size], temperature) for i in range(0, len(images), batch_size)])


def freeze(model: nn.Module) -> nn.Module:
    """The teacher as the student sees it: eval mode, no parameter needs a gradient."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class DefensiveDistillation:
    """What a distillation run is: the temperature of steps 1–3, deployment at ``T = 1``."""

    name = "distillation"
    deployed_temperature = 1.0

    def __init__(self, temperature: float = 100.0, student_labels: str = "soft"):
        self.temperature = check_distillation_temperature(temperature)
        self.student_labels = check_student_labels(student_labels)

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {
            "defense": self.name, "temperature": self.temperature, "deployed_temperature": self.deployed_temperature,
        }
        if self.student_labels != "soft":  # stated only for the reference's defect
            described["student_labels"] = self.student_labels
        return described
