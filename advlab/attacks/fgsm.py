"""Fast Gradient Sign Method (Goodfellow et al., 2015).

``x_adv = x + eps · sign(∇x loss)``, then clamped to [0, 1] unless ``clamp=False``. The gradient
does not depend on eps, so a list of budgets costs one forward and one backward pass; where a
budget leaves the image as it is (eps 0), the gradient's forward already gave its logits and the
step carries them (``adv_logits``), so the evaluator does not run that forward again.

Under the reference protocol's defect (``model_mode="train"``, docs/reference_protocol.md) every
forward draws fresh dropout masks, so the public code's gradient differs per eps: there the
gradient is recomputed for every eps, as that code does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import AttackStep, BoundedAttack, input_gradient, pixel_budget, zero_gradient_mask


class FGSM(BoundedAttack):
    """Config-built FGSM: ``FGSM(eps=[0, 0.1, 0.3])(model, x, y)``.

    Args:
        eps: budget or list of budgets (L∞).
        eps_unit: ``pixel`` ([0, 1] images) or ``normalized`` (the paper's ImageNet convention:
            eps applies to the normalized image, i.e. eps·std per channel in pixels).
        clamp: clip the result to [0, 1] (the ImageNet reference does not).
        targeted: ``y`` holds target classes and the step descends their loss.
        loss: ``ce`` or ``margin`` (see :mod:`advlab.attacks.losses`).
        temperature: take the loss on ``logits / temperature``.
    """

    name = "fgsm"

    def sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[AttackStep]:
        if self.model_mode == "train":
            yield from self._sweep_per_eps(model, x, y)
            return
        grad, clean_logits = input_gradient(model, x, y, self.loss, self.temperature, self.targeted)
        zero_grad = zero_gradient_mask(grad)
        direction = grad.sign()
        x = x.detach()
        for eps in self.eps_values:
            x_adv = x + pixel_budget(model, eps, self.eps_unit, x) * direction
            x_adv = x_adv.clamp_(0.0, 1.0) if self.clamp else x_adv  # x_adv is a fresh tensor: clamp in place
            unchanged = eps == 0 and torch.equal(x_adv, x)
            yield AttackStep(eps, x_adv, zero_grad=zero_grad, adv_logits=clean_logits if unchanged else None)

    def _sweep_per_eps(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[AttackStep]:
        """The reference protocol: one dropout-on forward and backward per eps; each step carries
        that forward's logits (the public code's "initial prediction" for this eps)."""
        x = x.detach()
        for eps in self.eps_values:
            grad, logits = input_gradient(model, x, y, self.loss, self.temperature, self.targeted, "train")
            x_adv = x + pixel_budget(model, eps, self.eps_unit, x) * grad.sign()
            x_adv = x_adv.clamp(0.0, 1.0) if self.clamp else x_adv
            yield AttackStep(eps, x_adv, zero_grad=zero_gradient_mask(grad), logits=logits)

    def strength(self, eps: float | None) -> int | None:
        return 1


def fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | Sequence[float], **settings: Any
) -> torch.Tensor | list[torch.Tensor]:
    """Functional FGSM, ``FGSM(eps, **settings)(model, x, y)`` (settings and defaults: :class:`FGSM`'s):
    a tensor for one eps, a list of tensors (one gradient) for a list."""
    return FGSM(eps, **settings)(model, x, y)
