"""What every gradient attack shares: argument checks, eps units, the input gradient, and the
guarantees (input never mutated, no gradients left on parameters, model mode restored)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from advlab.attacks.losses import attack_loss, check_loss, check_temperature
from advlab.errors import AdvlabError
from advlab.models.normalize import input_std

EPS_UNITS = ("pixel", "normalized")
# "train" exists only to reproduce a defect of the code behind the paper's §VI (the reference
# protocol, PROTOCOLS.md §VI): it never calls model.eval(), so its attacks and predictions run
# with dropout on. Every correct evaluation uses "eval".
MODEL_MODES = ("eval", "train")


def as_eps_list(eps: float | Sequence[float]) -> tuple[list[float], bool]:
    """``(values, was_scalar)``; every value must be a finite number ≥ 0."""
    single = not isinstance(eps, Sequence) or isinstance(eps, str)
    values = [eps] if single else list(eps)
    if not values:
        raise AdvlabError("eps list is empty: give at least one value, e.g. eps=[0.1]")
    checked = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise AdvlabError(f"eps must be a number, got {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise AdvlabError(f"eps must be >= 0, got {value}: use a non-negative budget such as eps=0.1")
        checked.append(number)
    return checked, single


def check_count(value: int, what: str = "steps", example: int = 40) -> int:
    """A positive whole number; ``what`` names the setting in the message, ``example`` a sensible value."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AdvlabError(f"{what} must be an integer >= 1, got {value!r}: e.g. {what}={example}") from None
    if number < 1 or number != value:
        raise AdvlabError(f"{what} must be an integer >= 1, got {value!r}: e.g. {what}={example}")
    return number


def check_eps_unit(unit: str) -> str:
    if unit not in EPS_UNITS:
        raise AdvlabError(f"unknown eps_unit {unit!r}: use 'pixel' ([0, 1] images) or 'normalized'")
    return unit


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


def check_model_mode(mode: str) -> str:
    if mode not in MODEL_MODES:
        raise AdvlabError(f"unknown model_mode {mode!r}: use 'eval' (correct) or 'train' (the reference protocol's defect)")
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
    x_var = x.detach().clone().requires_grad_(True)
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
    """Base of config-built attacks: ``attack(model, x, y)`` returns adversarial images.

    Subclasses implement ``perturb(model, x, y, eps)`` for one budget. ``sweep`` yields
    ``(eps, x_adv)`` for every configured eps; attacks that can share work across budgets
    (FGSM: one gradient for all) override it. After each call ``last_zero_grad`` holds the
    per-sample zero-gradient mask of the first gradient, for the masking diagnostics.
    """

    name = "attack"

    def __init__(
        self,
        eps: float | Sequence[float] = 0.03,
        eps_unit: str = "pixel",
        clamp: bool = True,
        targeted: bool = False,
        loss: str = "ce",
        temperature: float = 1.0,
        max_samples: int | None = None,
        model_mode: str = "eval",
    ):
        self.eps_values, self._single = as_eps_list(eps)
        self.eps_unit = check_eps_unit(eps_unit)
        self.clamp = bool(clamp)
        self.targeted = bool(targeted)
        self.loss = check_loss(loss)
        self.temperature = check_temperature(temperature)
        # evaluate on the first N test images only (a compute budget); the result rows state n
        self.max_samples = None if max_samples is None else check_count(max_samples, "max_samples", 1000)
        self.last_zero_grad: torch.Tensor | None = None
        # "train" only for the reference protocol (MODEL_MODES); attacks that support it (FGSM)
        # then set last_logits: the logits their last gradient was taken at
        self.model_mode = check_model_mode(model_mode)
        self.last_logits: torch.Tensor | None = None

    @property
    def eps(self) -> float | list[float]:
        return self.eps_values[0] if self._single else list(self.eps_values)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        raise NotImplementedError

    def sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[float, torch.Tensor]]:
        for eps in self.eps_values:
            yield eps, self.perturb(model, x, y, eps)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """One tensor for a single eps, a list (in eps order) for a list of eps."""
        outputs = [x_adv for _, x_adv in self.sweep(model, x, y)]
        return outputs[0] if self._single else outputs

    def settings(self) -> dict[str, Any]:
        """What a results table must state about this attack (units, loss, temperature, …)."""
        return {
            "attack": self.name,
            "eps_unit": self.eps_unit,
            "clamp": self.clamp,
            "targeted": self.targeted,
            "loss": self.loss,
            "temperature": self.temperature,
            "max_samples": self.max_samples,
            # stated only when it is the reference protocol's train mode: eval-mode results keep
            # the settings they always had
            **({"model_mode": self.model_mode} if self.model_mode != "eval" else {}),
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in {"eps": self.eps, **self.settings()}.items() if k != "attack")
        return f"{type(self).__name__}({fields})"
