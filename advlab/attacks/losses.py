"""Losses an attack climbs, computed per sample on ``logits / temperature``.

``ce``      cross-entropy (the paper's NLL on log-softmax); saturates when the softmax does.
``margin``  the Carlini–Wagner logit margin ``max_{j≠y} z_j − z_y``; it never saturates, so it
            sees through the vanishing softmax gradients of a defensively distilled network.
``dlr``     APGD's difference-of-logits ratio (Croce & Hein, 2020), invariant to shifting and
            scaling the logits; with ``ce``, what APGD climbs (:func:`apgd_loss`, no temperature).

``temperature`` divides the logits first (Carlini & Wagner attack a distilled network on
``logits / T``). Targeted mode returns the loss whose ascent moves towards the target class.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from advlab.errors import AdvlabError

LOSSES = ("ce", "margin")


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise AdvlabError(f"unknown attack loss {name!r}: use one of {', '.join(LOSSES)}")
    return name


def check_temperature(temperature: float, what: str = "temperature", hint: str = "use 1 for the plain logits") -> float:
    """A finite number > 0; ``what`` names the setting in the message, ``hint`` says what to use."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise AdvlabError(f"{what} must be a number > 0, got {temperature!r}: {hint}") from None
    if not 0 < value < math.inf:
        raise AdvlabError(f"{what} must be > 0, got {temperature}: {hint}")
    return value


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z_y − max_{j≠y} z_j`` per sample: positive when ``labels`` is the top-1 class."""
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true_logit - others.amax(dim=1)


def attack_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss: str = "ce",
    temperature: float = 1.0,
    targeted: bool = False,
) -> torch.Tensor:
    """Per-sample objective to *maximize*: away from ``labels``, or towards them if targeted."""
    z = logits.float() / temperature
    if loss == "ce":
        value = F.cross_entropy(z, labels, reduction="none")
    elif loss == "margin":
        value = -logit_margin(z, labels)
    else:
        check_loss(loss)
    return -value if targeted else value


def check_confidence(confidence: float) -> float:
    if not float(confidence) >= 0:
        raise AdvlabError(f"confidence must be >= 0, got {confidence}: use 0 for the smallest perturbation")
    return float(confidence)


def margin_gain(
    logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    targeted: bool = False,
) -> torch.Tensor:
    """How far past the decision boundary a sample is, in (tempered) logits: ``max_{j≠y} z_j − z_y``
    away from ``labels``, ``z_t − max_{j≠t} z_j`` towards a target. Positive = the attack succeeded."""
    return attack_loss(logits, labels, "margin", temperature, targeted)


def cw_objective(gain: torch.Tensor, confidence: float = 0.0) -> torch.Tensor:
    """Carlini–Wagner's f₆ per sample from its :func:`margin_gain`, to *minimize*: ``max(−gain, −κ)``.
    It stops pulling once the sample is ``κ`` logits past the boundary, so the distance term can
    shrink the perturbation."""
    return (-gain).clamp(min=-confidence)


def reached(gain: torch.Tensor, confidence: float = 0.0) -> torch.Tensor:
    """Per sample, from its :func:`margin_gain`: the attack succeeded with a margin of at least
    ``confidence`` (and strictly past the boundary, so a tie does not count)."""
    return (gain > 0) & (gain >= confidence)


APGD_LOSSES = ("ce", "dlr")


def check_apgd_loss(loss: str) -> str:
    if loss not in APGD_LOSSES:
        raise AdvlabError(f"unknown APGD loss {loss!r}: use 'ce' or 'dlr'")
    return loss


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample DLR loss to maximise. Untargeted: ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)``;
    targeted at ``t``: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2)`` (π: logits sorted, descending)."""
    z = logits.float()
    ranked = z.sort(dim=1, descending=True).values
    true = z.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        return -(true - other) / (ranked[:, 0] - ranked[:, 2] + 1e-12)
    aimed = z.gather(1, target[:, None]).squeeze(1)
    return -(true - aimed) / (ranked[:, 0] - 0.5 * (ranked[:, 2] + ranked[:, 3]) + 1e-12)


def apgd_loss(logits: torch.Tensor, y: torch.Tensor, loss: str, target: torch.Tensor | None) -> torch.Tensor:
    """APGD's per-sample loss to maximise: ``ce`` or ``dlr``, untargeted or towards ``target``."""
    if loss == "dlr":
        return dlr_loss(logits, y, target)
    if target is None:
        return F.cross_entropy(logits.float(), y, reduction="none")
    return -F.cross_entropy(logits.float(), target, reduction="none")
