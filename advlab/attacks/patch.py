"""Adversarial patch (Brown et al., 2017): one image-independent patch that, pasted anywhere on
an image, makes the classifier answer the target class.

Plain PyTorch, no Lightning: the config-built :class:`PatchAttack` (what to train and how), the
frozen model, the training objective and the target class. The pieces live beside it:
:mod:`advlab.attacks.paste` (pixels, placements, pasting), :mod:`advlab.attacks.patch_files`
(saved patches); :mod:`advlab.lit.patch` holds the Lightning modules and
:mod:`advlab.pipeline.patch` the run's patch step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import eval_mode
from advlab.attacks.checks import check_count
from advlab.attacks.losses import attack_loss, check_loss
from advlab.attacks.paste import as_size, check_fits, paste_random, patch_pixels
from advlab.attacks.patch_files import expand_patch_files, load_patch
from advlab.class_names import close_names, find_class
from advlab.errors import AdvlabError

# the pieces the patch's training step is made of (benchmarks import them from here)
__all__ = ["PatchAttack", "frozen", "paste_random", "patch_objective", "patch_pixels", "resolve_target"]


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients while the patch trains (the backward pass then
    computes no weight gradients at all); every flag is put back afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with eval_mode(model):
        try:
            for parameter, _ in flags:
                parameter.requires_grad_(False)
            yield model
        finally:
            for parameter, flag in flags:
                parameter.requires_grad_(flag)


def patch_objective(logits: torch.Tensor, target_index: int, loss: str = "ce") -> torch.Tensor:
    """Mean loss to *minimise* so that every image is classified as ``target_index``."""
    target = torch.full((len(logits),), int(target_index), dtype=torch.long, device=logits.device)
    return -attack_loss(logits, target, loss=loss, targeted=True).mean()


def resolve_target(
    target: int | str, class_names: Sequence[str] | None, num_classes: int | None
) -> tuple[int, str | None]:
    """``(index, name)`` of the target class given by index or by name (matched by
    :func:`advlab.class_names.find_class`: case-blind, any synonym of an ImageNet name)."""
    count = num_classes if num_classes is not None else (len(class_names) if class_names else None)
    names = [str(n) for n in class_names] if class_names else None
    text = str(target).strip()
    if names is not None:
        found, index = find_class(text, names)
        if found and index is None:
            raise AdvlabError(f"target class {target!r} names two classes: give the class index instead")
        if found and index is not None:
            return index, names[index]
    if isinstance(target, bool) or not re.fullmatch(r"-?\d+", text):
        if names is None:
            raise AdvlabError(
                f"target class {target!r} is not an index and neither the model nor the data has class names: "
                "give an index"
            )
        close = close_names(text, names)
        if close:
            hint = "did you mean " + ", ".join(repr(c) for c in close) + "?"
        else:
            hint = (
                f"the {len(names)} class names include "
                + ", ".join(repr(n) for n in names[:8])
                + (", …" if len(names) > 8 else "")
            )
        raise AdvlabError(f"unknown target class {target!r}: {hint} (or give a class index)")
    index = int(text)
    if count is not None and not 0 <= index < count:
        raise AdvlabError(f"target class index {index} is out of range: use 0 … {count - 1}")
    if index < 0:
        raise AdvlabError(f"target class index {index} is out of range: use an index >= 0")
    return index, (names[index] if names is not None and index < len(names) else None)


OptimizerFactory = Any  # a callable taking the parameter list (a functools.partial of a torch optimizer)


def default_optimizer() -> OptimizerFactory:
    """The reference protocol's optimiser: SGD, lr 0.1, momentum 0.8."""
    return partial(torch.optim.SGD, lr=0.1, momentum=0.8)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    return list(value)


class PatchAttack:
    """A targeted, image-independent patch, trained on images and evaluated on held-out ones.

    Not a per-batch :class:`~advlab.attacks.Attack`: it must be trained first, so the run
    evaluates it in a step of its own (:func:`advlab.pipeline.patch.evaluate_patch`). ``target`` and
    ``patch_size`` take one value or a list (one patch per target × size); ``patch_file``
    evaluates saved patches instead of training (transfer to another model).

    Args:
        target: target class by name (``"toaster"``) or index; a list for several patches.
        patch_size: side in pixels, or a list of sides (``[[h, w]]`` for a rectangle).
        optimizer: a ``functools.partial`` of a torch optimizer (default SGD lr 0.1, momentum 0.8).
        epochs: passes over the training images.
        batch_size: training batch size; ``eval_batch_size`` for the evaluation (default the same).
        train_split: share of the test set the patch trains on; the rest is held out for evaluation.
        split_seed: seed of that split.
        placements: random placements per held-out image in the evaluation, each on a fresh copy.
        scale: ``[low, high]`` random scale of the patch per image (training and evaluation), or None.
        rotation: random rotation in ±degrees per image, 0 for none.
        loss: ``ce`` (the reference's cross-entropy towards the target) or ``margin``.
        patch_file: a saved patch ``.pt``, a glob pattern (``…/*/patches/*/resnet101_*.pt``) or a
            list of them: patches to evaluate without training.
        example_count: held-out images drawn with their top-5 bars (the paper's Figs 4–6).
        seed: seed of the evaluation placements (the same seed gives the same placements).
    """

    name = "patch"

    def __init__(
        self,
        target: int | str | Sequence[int | str] = "toaster",
        patch_size: int | Sequence[int] = 32,
        optimizer: OptimizerFactory | None = None,
        epochs: int = 5,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        train_split: float = 0.9,
        split_seed: int = 0,
        placements: int = 4,
        scale: Sequence[float] | None = None,
        rotation: float = 0.0,
        loss: str = "ce",
        patch_file: str | Sequence[str] | None = None,
        example_count: int = 4,
        seed: int = 0,
    ):
        self.targets = _as_list(target)
        # a list of numbers is several square sizes; a rectangle is a nested pair: [[h, w]]
        self.sizes = [as_size(s) for s in _as_list(patch_size)]
        self.patch_files = expand_patch_files(_as_list(patch_file))
        if not self.patch_files and not self.targets:
            raise AdvlabError("attack.patch.target is empty: give a class name or index, e.g. target=toaster")
        self.optimizer = optimizer if optimizer is not None else default_optimizer()
        if not callable(self.optimizer):
            raise AdvlabError(
                f"attack.patch.optimizer must be a torch optimizer with _partial_: true, got {optimizer!r}"
            )
        self.epochs = check_count(epochs, "attack.patch.epochs", 5)
        self.batch_size = check_count(batch_size, "attack.patch.batch_size", 32)
        self.eval_batch_size = check_count(
            eval_batch_size if eval_batch_size is not None else batch_size, "attack.patch.eval_batch_size", 100
        )
        if not 0.0 < float(train_split) < 1.0:
            raise AdvlabError(
                f"attack.patch.train_split must be between 0 and 1 (exclusive), got {train_split}: "
                "the reference uses 0.9"
            )
        self.train_split = float(train_split)
        self.split_seed = int(split_seed)
        self.placements = check_count(placements, "attack.patch.placements", 4)
        if scale is not None:
            scale = [float(s) for s in scale]
            if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
                raise AdvlabError(f"attack.patch.scale must be [low, high] with 0 < low <= high, or null; got {scale}")
        self.scale = scale
        self.rotation = float(rotation)
        if not 0.0 <= self.rotation <= 180.0:
            raise AdvlabError(f"attack.patch.rotation must be between 0 and 180 degrees, got {rotation}")
        self.loss = check_loss(loss)
        self.example_count = int(example_count)
        self.seed = int(seed)
        self.pixels: torch.Tensor | None = None  # the patch __call__ pastes (see load)

    @property
    def transformed(self) -> bool:
        return self.scale is not None or bool(self.rotation)

    def check_image(self, size: tuple[int, int], image_shape: Sequence[int]) -> None:
        check_fits(size, image_shape, self.scale, self.rotation)

    def apply(
        self, images: torch.Tensor, pixels: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``images`` with the patch at one random place each (scaled/turned if configured)."""
        pixels = pixels if pixels is not None else self.pixels
        if pixels is None:
            raise AdvlabError(
                "this PatchAttack holds no patch: train one (advlab.lit.patch.train_patch) "
                "or load one (attack.load(path))"
            )
        return paste_random(images, pixels.to(images.device), self.scale, self.rotation, generator)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The attack's usual signature: ``x`` with the loaded patch pasted (``model`` and ``y``
        are not needed once the patch exists)."""
        return self.apply(x)

    def load(self, path: str | Path) -> dict[str, Any]:
        data = load_patch(path)
        self.pixels = data["pixels"]
        return data

    def optimizer_settings(self) -> dict[str, Any]:
        func = getattr(self.optimizer, "func", self.optimizer)
        keywords = dict(getattr(self.optimizer, "keywords", {}) or {})
        return {
            "optimizer": getattr(func, "__name__", str(func)),
            **{k: keywords[k] for k in ("lr", "momentum") if k in keywords},
        }

    def settings(self) -> dict[str, Any]:
        return {
            "attack": self.name,
            **self.optimizer_settings(),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "train_split": self.train_split,
            "split_seed": self.split_seed,
            "placements": self.placements,
            "scale": self.scale,
            "rotation": self.rotation,
            "loss": self.loss,
        }

    def __repr__(self) -> str:
        what = (
            f"patch_file={self.patch_files}" if self.patch_files else f"target={self.targets}, patch_size={self.sizes}"
        )
        return f"PatchAttack({what}, {', '.join(f'{k}={v!r}' for k, v in self.settings().items() if k != 'attack')})"
