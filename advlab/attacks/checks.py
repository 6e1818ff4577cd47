"""Checks at the door of every attack: settings (eps, counts, units, norms) when an attack is
built, and the images, labels and model when it is called. Each failure is one line naming the
value and the fix (:class:`advlab.errors.AdvlabError`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from advlab.errors import AdvlabError

EPS_UNITS = ("pixel", "normalized")
NORMS = ("linf", "l2")


def check_count(value: Any, what: str = "steps", example: int = 40) -> int:
    """A positive whole number (``5`` or ``5.0``); ``what`` names the setting, ``example`` a sensible value."""
    message = f"{what} must be an integer >= 1, got {value!r}: e.g. {what}={example}"
    if isinstance(value, bool):
        raise AdvlabError(message)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AdvlabError(message) from None
    if number < 1 or number != value:
        raise AdvlabError(message)
    return number


def check_eps_unit(unit: str) -> str:
    if unit not in EPS_UNITS:
        raise AdvlabError(f"unknown eps_unit {unit!r}: use 'pixel' ([0, 1] images) or 'normalized'")
    return unit


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise AdvlabError(f"unknown norm {norm!r}: use 'linf' or 'l2'")
    return norm


def as_eps_list(eps: float | Sequence[float], norm: str = "linf", unit: str = "pixel") -> tuple[list[float], bool]:
    """``(values, was_scalar)``; every value a finite number >= 0.

    An L∞ budget above 1 in pixel units covers the whole [0, 1] range (the attack binarises
    the image): that is someone meaning 8/255 who typed 8, so it is refused with that hint.
    L2 radii above 1 are ordinary and stay allowed.
    """
    single = not isinstance(eps, Sequence) or isinstance(eps, str)
    values: list[Any] = [eps] if single else list(eps)  # type: ignore[arg-type]
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
        if number > 1 and norm == "linf" and unit == "pixel":
            raise AdvlabError(
                f"eps {value:g} is larger than the [0, 1] pixel range (L∞): "
                f"did you mean eps={number / 255:.4f} ({value:g}/255)?"
            )
        checked.append(number)
    return checked, single


def _image_problem(x: torch.Tensor) -> str | None:
    if not isinstance(x, torch.Tensor):
        return f"images must be a torch.Tensor, got {type(x).__name__}: e.g. torch.as_tensor(images)"
    if not x.is_floating_point():
        hint = "x.float() / 255" if x.dtype == torch.uint8 else "x.float()"
        return f"images must be a floating tensor in [0, 1], got dtype {x.dtype}: convert with {hint}"
    if x.dim() < 2:
        return f"images must be a batch (N×C×H×W), got shape {tuple(x.shape)}"
    if x.dim() == 3:
        return f"images of shape {tuple(x.shape)} look like one C×H×W image without a batch dimension: pass x[None]"
    if x.numel() == 0:
        return "images are empty: give at least one image"
    extremes = torch.aminmax(x.detach())
    low, high = float(extremes.min), float(extremes.max)
    if math.isnan(low) or math.isnan(high) or bool(torch.isnan(x).any()):
        return "images contain NaN: check the data pipeline"
    if low < -1e-6:
        return (
            f"images must lie in [0, 1], got values down to {low:g} (normalised inputs?): pass [0, 1] "
            "images and normalise inside the model (advlab.models.normalize.Normalize)"
        )
    if high > 1.0 + 1e-6:
        hint = "divide by 255" if high > 2.0 else "clamp or rescale them"
        return f"images must lie in [0, 1], got values up to {high:g}: {hint}"
    return None


def check_images(x: torch.Tensor) -> None:
    """A floating N×C×H×W batch in [0, 1] (no uint8, no 0–255 values, no normalised inputs, no NaN)."""
    problem = _image_problem(x)
    if problem:
        raise AdvlabError(problem)


def check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Images a floating [0, 1] batch the model accepts, labels integer class indices in range,
    one per image. The model's class count comes from one forward pass on the first image."""
    check_images(x)
    if not isinstance(y, torch.Tensor) or y.dtype in (torch.bool,) or y.is_floating_point() or y.is_complex():
        what = type(y).__name__ if not isinstance(y, torch.Tensor) else f"dtype {y.dtype}"
        raise AdvlabError(
            f"labels must be an integer tensor of class indices, got {what}: e.g. torch.as_tensor(labels).long()"
        )
    if y.dim() != 1 or len(y) != len(x):
        raise AdvlabError(f"labels must be one class index per image: got shape {tuple(y.shape)} for {len(x)} images")
    try:
        with torch.no_grad():
            width = model(x[:1]).shape[-1]
    except (RuntimeError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AdvlabError(f"the model does not accept images of shape {tuple(x.shape)}: {first}") from None
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= width:
        bad = low if low < 0 else high
        raise AdvlabError(f"label {bad} is out of range for a model with {width} classes: use 0 … {width - 1}")
