"""The attack contract, and what every gradient attack shares.

Contract (what :class:`advlab.lit.attack_eval.AttackEvaluation` and the diagnostics rely on;
nothing else, and never an attack's name):

``attack.sweep(model, x, y)``
    yields one :class:`AttackStep` per budget in :attr:`Attack.eps_values`, in that order.
``attack.eps_values``
    the budgets: a list of floats, or ``[None]`` for an attack without one (CW: the closest
    adversarial it finds).
``attack.strength(eps)``
    gradient steps per image at that budget, or ``None`` when not comparable; the masking check
    "a weaker attack beats a stronger one" compares attacks by it.
``attack.norm`` (``"linf"`` / ``"l2"``), ``attack.targeted``, ``attack.max_samples``
    the ball the budget is measured in, whether ``y`` holds target classes, and how many test
    images the evaluation gives it (``None``: all).
``attack.settings()``
    what a results table must state about the attack (``attack``, ``norm``, its parameters).
``attack(model, x, y)``
    the adversarial images: one tensor for one budget, a list for a list.

Every attack takes [0, 1] images (checked at the door, :mod:`advlab.attacks.checks`), never
mutates them, leaves no gradient on the model's parameters and restores the model's modes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advlab.attacks.checks import as_eps_list, check_count, check_eps_unit, check_inputs, check_norm
from advlab.attacks.losses import attack_loss, check_loss, check_temperature
from advlab.errors import AdvlabError
from advlab.models.normalize import input_std

__all__ = [
    "Attack",
    "AttackStep",
    "BoundedAttack",
    "eval_mode",
    "model_mode",
    "input_gradient",
    "pixel_budget",
    "require_gradients",
    "zero_gradient_mask",
]


@dataclass(frozen=True)
class AttackStep:
    """One budget's result of a sweep.

    Attributes:
        eps: the budget (``None`` for an attack without one).
        x_adv: the adversarial images, same shape as the input.
        zero_grad: per image, True where the first input gradient was exactly zero (gradient
            masking probe); ``None`` when the attack's objective cannot saturate.
        success: per image, whether the attack reached its goal (attacks that decide this
            themselves, e.g. CW with its confidence margin); ``None`` otherwise.
        l2: per image, the L2 distance of the success (``inf`` where it failed), with ``success``.
        logits: the logits this step's gradient was taken at, set only by attacks in the
            reference protocol's train mode (a fresh dropout mask per forward): the public code's
            "prediction before the attack" for this budget.
        adv_logits: the model's logits at ``x_adv`` in eval mode when the attack computed them
            anyway (FGSM at eps 0: its gradient's forward), so the evaluator skips that forward.
        extras: per-image values the attack reports itself, summed into its result rows as
            ``total / n`` under the same key (AutoAttack: robust after each component, sanity flags).
    """

    eps: float | None
    x_adv: torch.Tensor
    zero_grad: torch.Tensor | None = None
    success: torch.Tensor | None = None
    l2: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    adv_logits: torch.Tensor | None = None
    extras: Mapping[str, torch.Tensor] | None = None


def pixel_budget(model: nn.Module, eps: float, unit: str, like: torch.Tensor) -> torch.Tensor | float:
    """The L∞ budget in [0, 1] pixel units, per channel when eps is in normalized units.

    A model that normalizes inside (``Normalize``) divides by std, so a step of eps in normalized
    space is a step of eps·std in pixel space. A model without normalization sees pixels as they
    are, and both units coincide.
    """
    if unit == "pixel":
        return eps
    std = input_std(model)
    if std is None:
        return eps
    return eps * std.to(device=like.device, dtype=like.dtype)


# "train" exists only to reproduce a defect of the code behind the paper's §VI (the reference
# protocol, PROTOCOLS.md §VI, docs/reference_protocol.md): it never calls model.eval(), so its
# attacks and predictions run with dropout on. Every correct evaluation uses "eval".
MODEL_MODES = ("eval", "train")


def check_model_mode(mode: str) -> str:
    if mode not in MODEL_MODES:
        raise AdvlabError(
            f"unknown model_mode {mode!r}: use 'eval' (correct) or 'train' (the reference protocol's defect)"
        )
    return mode


@contextmanager
def model_mode(model: nn.Module, mode: str = "eval") -> Iterator[nn.Module]:
    """Run with the whole model in ``mode`` and put every submodule back in the mode it was in,
    even one the caller had set differently. ``eval``: no dropout noise, frozen batch-norm
    statistics. ``train``: the reference protocol's defect (dropout on, fresh masks per forward)."""
    modes = [(module, module.training) for module in model.modules()]
    model.train(check_model_mode(mode) == "train")
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def eval_mode(model: nn.Module) -> AbstractContextManager[nn.Module]:
    """Run the attack in eval mode (no dropout noise, frozen batch-norm statistics) and restore
    every submodule's mode afterwards."""
    return model_mode(model, "eval")


def require_gradients() -> None:
    if torch.is_inference_mode_enabled():
        raise AdvlabError(
            "attacks need input gradients but torch.inference_mode is on: build the Lightning "
            "Trainer with inference_mode=False (advlab's evaluation does)"
        )


def input_gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    temperature: float = 1.0,
    targeted: bool = False,
    mode: str = "eval",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇x Σ loss, logits)`` at ``x`` with the model in eval mode (``mode="train"``: the
    reference protocol's dropout-on forward, see :func:`model_mode`).

    The loss is summed over the batch, so each sample's gradient is its own and does not shrink
    with the batch size. ``torch.autograd.grad`` asks for the input's gradient only: parameters'
    ``.grad`` stay as they were and no weight gradient is computed.
    """
    require_gradients()
    x_var = x.detach().requires_grad_(True)  # a new leaf on x's storage: no copy, x is never written
    with torch.enable_grad(), model_mode(model, mode):
        logits = model(x_var)
        objective = attack_loss(logits, y, loss, temperature, targeted).sum()
        (grad,) = torch.autograd.grad(objective, x_var)
    return grad.detach(), logits.detach()


def zero_gradient_mask(grad: torch.Tensor) -> torch.Tensor:
    """Per sample: True where the input gradient is exactly zero everywhere (sign() gives 0 and
    the attack cannot move): the signature of a saturated softmax, i.e. gradient masking."""
    return grad.flatten(1).eq(0).all(dim=1)


class Attack:
    """Base of every attack (the contract is in this module's docstring).

    A subclass sets :attr:`name` and :attr:`norm` and implements :meth:`sweep`; one without a
    budget keeps ``eps_values == [None]``. :meth:`__call__` checks the inputs and collects the
    sweep's images.

    Args:
        targeted: ``y`` holds target classes instead of true labels.
        max_samples: evaluate this attack on the first N test images only (``None``: all).
        model_mode: ``eval``; ``train`` only for the reference protocol (:data:`MODEL_MODES`),
            supported by attacks that pass it on to :func:`input_gradient` (FGSM).
    """

    name = "attack"
    norm = "linf"

    def __init__(self, targeted: bool = False, max_samples: int | None = None, model_mode: str = "eval"):
        self.targeted = bool(targeted)
        self.model_mode = check_model_mode(model_mode)
        # evaluate on the first N test images only (a compute budget); the result rows state n
        self.max_samples = None if max_samples is None else check_count(max_samples, "max_samples", 1000)
        self.eps_values: Sequence[float | None] = [None]
        self._single = True

    @property
    def eps(self) -> float | list[float] | None:
        return self.eps_values[0] if self._single else list(self.eps_values)  # type: ignore[arg-type]

    def sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[AttackStep]:
        raise NotImplementedError

    def strength(self, eps: float | None) -> int | None:
        """Gradient steps per image at ``eps``; ``None``: not comparable with other attacks."""
        return None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """One tensor for a single eps, a list (in eps order) for a list of eps."""
        check_inputs(model, x, y)
        outputs = [step.x_adv for step in self.sweep(model, x, y)]
        return outputs[0] if self._single else outputs

    def settings(self) -> dict[str, Any]:
        """What a results table must state about this attack."""
        return {
            "attack": self.name,
            "norm": self.norm,
            "targeted": self.targeted,
            "max_samples": self.max_samples,
            **self._mode_setting(),
        }

    def _mode_setting(self) -> dict[str, str]:
        # stated only for the reference protocol's train mode: eval-mode results keep the
        # settings they always had
        return {"model_mode": self.model_mode} if self.model_mode != "eval" else {}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in {"eps": self.eps, **self.settings()}.items() if k != "attack")
        return f"{type(self).__name__}({fields})"


class BoundedAttack(Attack):
    """A gradient attack within an eps-ball: eps list and unit, clipping, loss, temperature.

    Subclasses implement ``perturb(model, x, y, eps)`` for one budget (the default
    :meth:`sweep` calls it per eps) or override :meth:`sweep` to share work across budgets.
    """

    def __init__(
        self,
        eps: float | Sequence[float] = 0.03,
        eps_unit: str = "pixel",
        clamp: bool = True,
        targeted: bool = False,
        loss: str = "ce",
        temperature: float = 1.0,
        max_samples: int | None = None,
        norm: str | None = None,
        model_mode: str = "eval",
    ):
        super().__init__(targeted, max_samples, model_mode)
        self.norm = check_norm(norm or self.norm)
        self.eps_unit = check_eps_unit(eps_unit)
        self.eps_values: list[float]
        self.eps_values, self._single = as_eps_list(eps, self.norm, self.eps_unit)
        self.clamp = bool(clamp)
        self.loss = check_loss(loss)
        self.temperature = check_temperature(temperature)

    def _require_pixels(self) -> None:
        """For an attack defined on [0, 1] images with eps in pixel units only (APGD, Square)."""
        if self.eps_unit != "pixel" or not self.clamp:
            name = type(self).__name__
            raise AdvlabError(f"{name} works on [0, 1] images in pixel units: set eps_unit=pixel and clamp=true")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> AttackStep:
        raise NotImplementedError

    def sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[AttackStep]:
        for eps in self.eps_values:
            yield self.perturb(model, x, y, eps)

    def settings(self) -> dict[str, Any]:
        return {
            "attack": self.name,
            "norm": self.norm,
            "eps_unit": self.eps_unit,
            "clamp": self.clamp,
            "targeted": self.targeted,
            "loss": self.loss,
            "temperature": self.temperature,
            "max_samples": self.max_samples,
            **self._mode_setting(),
        }
