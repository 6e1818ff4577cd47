"""Adversarial patch (Brown et al., 2017): one image-independent patch that, pasted anywhere on
an image, makes the classifier answer the target class.

Plain PyTorch, no Lightning: the patch's pixel map, random placements, the paste itself and
the training objective. :mod:`advlab.lit.patch` trains and evaluates a patch with these pieces.

The patch is a free parameter ``p`` shown as pixels ``(tanh(p) + 1) / 2`` in [0, 1], so SGD
can move it anywhere without clamping (the reference protocol, PROTOCOLS.md §IV). Pasting is
done in pixel space on [0, 1] images; the model normalizes inside, which is the same as the
reference pasting the normalized patch into the normalized image.

Every paste returns a new tensor and never writes into the images it is given: the
reference pastes its evaluation placements into one tensor in place, so its placements 2–4
stack several patches on one image. Here each placement starts from the clean image.
"""

from __future__ import annotations

import difflib
import glob
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import eval_mode
from advlab.attacks.losses import attack_loss, check_loss
from advlab.errors import AdvlabError

PATCH_FORMAT = "advlab-patch-1"


# --- the patch's pixels --------------------------------------------------------------------


def patch_pixels(parameter: torch.Tensor) -> torch.Tensor:
    """The free parameter mapped to pixels in [0, 1]: ``(tanh(p) + 1) / 2``."""
    return (torch.tanh(parameter) + 1.0) / 2.0


def patch_parameter(pixels: torch.Tensor, limit: float = 1e-4) -> torch.Tensor:
    """The parameter whose :func:`patch_pixels` are ``pixels`` (clipped just inside (0, 1), where
    ``atanh`` is finite): to continue training a saved patch."""
    return torch.atanh(pixels.clamp(limit, 1.0 - limit) * 2.0 - 1.0)


def as_size(patch_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from ``k`` (a k×k square) or ``[h, w]``; both ≥ 1."""
    values = [patch_size] if isinstance(patch_size, (int, float, str)) else list(patch_size)
    if len(values) == 1:
        values = values * 2
    try:
        height, width = (int(v) for v in values)
        if any(float(v) != int(float(v)) for v in values):
            raise ValueError
    except (TypeError, ValueError):
        raise AdvlabError(f"patch_size must be a whole number of pixels or [height, width], got {patch_size!r}") from None
    if height < 1 or width < 1:
        raise AdvlabError(f"patch_size must be >= 1 pixel, got {patch_size!r}")
    return height, width


def check_fits(size: tuple[int, int], image_hw: Sequence[int], scale: Sequence[float] | None = None, rotation: float = 0.0) -> None:
    """One-line error when the patch (at its largest scale and turned by up to ``rotation``)
    cannot lie inside an image of ``image_hw``."""
    image_h, image_w = int(image_hw[-2]), int(image_hw[-1])
    largest = max(scale) if scale else 1.0
    need_h, need_w = _bounding_box(size, largest, rotation)
    if need_h > image_h + 1e-6 or need_w > image_w + 1e-6:
        if largest == 1.0 and not rotation:
            extra, fix = "", f"use attack.patch.patch_size <= {min(image_h, image_w)}"
        else:
            extra = f" (at scale {largest:g}, rotated up to {rotation:g}°: {need_h:.1f}×{need_w:.1f} px)"
            fix = "use a smaller attack.patch.patch_size, scale or rotation"
        raise AdvlabError(f"patch {size[0]}×{size[1]} px is larger than the {image_h}×{image_w} px images{extra}: {fix}")


def _bounding_box(size: tuple[int, int], scale: float, rotation: float) -> tuple[float, float]:
    """Height and width in pixels of what a ``size`` patch at ``scale`` covers, for every angle in
    ±``rotation`` degrees. Bilinear resampling spreads the patch half a source pixel beyond
    its edge, so the support is ``scale · (side + 1)`` wide; at scale 1, angle 0 it is ``side``."""
    height, width = (size[0] + 1) * scale, (size[1] + 1) * scale
    limit = math.radians(min(abs(float(rotation)), 180.0))
    # |h cos a| + |w sin a| is largest where tan a = w/h (or at the end of the range)
    angles = [0.0, limit] + [a for a in (math.atan2(width, height), math.atan2(height, width)) if a <= limit]
    box_h = max(abs(height * math.cos(a)) + abs(width * math.sin(a)) for a in angles)
    box_w = max(abs(width * math.cos(a)) + abs(height * math.sin(a)) for a in angles)
    return box_h - 1, box_w - 1


# --- placements and pasting -----------------------------------------------------------------


def random_positions(
    count: int,
    size: tuple[int, int],
    image_hw: Sequence[int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``count × 2`` integer (top, left) corners on the CPU, uniform over every position where
    the whole patch lies inside the image."""
    image_h, image_w = int(image_hw[-2]), int(image_hw[-1])
    check_fits(size, (image_h, image_w))
    top = torch.randint(0, image_h - size[0] + 1, (count,), generator=generator)
    left = torch.randint(0, image_w - size[1] + 1, (count,), generator=generator)
    return torch.stack([top, left], dim=1)


def blend(images: torch.Tensor, canvas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A new tensor: ``canvas`` where ``mask`` is set, ``images`` elsewhere.

    A boolean mask selects exactly (the patch's own pixel values land in the image); a float
    mask in [0, 1] is an alpha matte over a ``canvas`` already multiplied by it (the edges of
    a scaled or turned patch). ``images`` is never written to.
    """
    canvas = canvas.to(images.dtype)
    if mask.dtype == torch.bool:
        return torch.where(mask, canvas, images)
    return images * (1.0 - mask.to(images.dtype)) + canvas


def paste(images: torch.Tensor, patch: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``images`` (B×C×H×W) with ``patch`` (C×h×w) pasted at ``positions`` (B×2 top-left
    corners, one per image), as a new tensor; differentiable in ``patch``.

    Vectorised: each output pixel looks up the patch pixel under it (an index gather), and a
    boolean mask keeps the image wherever the patch is not.
    """
    batch, _, image_h, image_w = images.shape
    patch_h, patch_w = patch.shape[-2:]
    if positions.shape != (batch, 2):
        raise AdvlabError(f"paste needs one (top, left) position per image: got shape {tuple(positions.shape)} for {batch} images")
    # checked on the CPU copy the placement functions return: no device sync per paste
    if (positions < 0).any() or (positions[:, 0] > image_h - patch_h).any() or (positions[:, 1] > image_w - patch_w).any():
        raise AdvlabError(f"a paste position puts the {patch_h}×{patch_w} patch outside the {image_h}×{image_w} image")
    positions = positions.to(device=images.device, dtype=torch.long)
    rows = torch.arange(image_h, device=images.device)[None, :] - positions[:, :1]  # B×H, row inside the patch
    cols = torch.arange(image_w, device=images.device)[None, :] - positions[:, 1:]  # B×W
    inside = ((rows >= 0) & (rows < patch_h))[:, None, :, None] & ((cols >= 0) & (cols < patch_w))[:, None, None, :]
    canvas = patch[:, rows.clamp(0, patch_h - 1)[:, :, None], cols.clamp(0, patch_w - 1)[:, None, :]]  # C×B×H×W
    return blend(images, canvas.movedim(0, 1), inside)


def random_transforms(
    count: int,
    size: tuple[int, int],
    image_hw: Sequence[int],
    scale: Sequence[float] | None = None,
    rotation: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per image: a scale drawn from ``scale`` = [low, high], an angle in ±``rotation`` degrees,
    and a centre (pixel-index coordinates) such that the scaled, turned patch lies inside."""
    image_h, image_w = int(image_hw[-2]), int(image_hw[-1])
    check_fits(size, (image_h, image_w), scale, rotation)
    low, high = (float(scale[0]), float(scale[1])) if scale else (1.0, 1.0)
    scales = low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)
    angles = (2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1) * math.radians(rotation)
    cos, sin = angles.cos().abs(), angles.sin().abs()
    # half the support (see _bounding_box); pixel i is touched when |i - c| < half, so the
    # centre may range over [half - 1, side - half] and every touched pixel is in the image
    half_h = scales * ((size[0] + 1) * cos + (size[1] + 1) * sin) / 2
    half_w = scales * ((size[1] + 1) * cos + (size[0] + 1) * sin) / 2
    centre_y = half_h - 1 + torch.rand(count, generator=generator, dtype=torch.float64) * (image_h + 1 - 2 * half_h).clamp(min=0)
    centre_x = half_w - 1 + torch.rand(count, generator=generator, dtype=torch.float64) * (image_w + 1 - 2 * half_w).clamp(min=0)
    return {"centre": torch.stack([centre_y, centre_x], 1), "scale": scales, "angle": angles}


def paste_transformed(images: torch.Tensor, patch: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``patch`` scaled by ``scale``, turned by ``angle`` (radians) and centred at ``centre``
    (B×2, row/column in pixel-index coordinates) on each image, bilinearly resampled with
    ``grid_sample``; a new tensor, differentiable in ``patch``.

    At scale 1, angle 0 and a centre of ``corner + (size - 1) / 2`` it samples exactly at
    the patch's pixel centres and equals :func:`paste` at ``corner``.
    """
    batch, channels, image_h, image_w = images.shape
    patch_h, patch_w = patch.shape[-2:]
    # the affine map in double precision (exact at integer corners) where the device has it
    dtype = torch.float64 if images.device.type in ("cpu", "cuda") else torch.float32
    angle, scale, centre = (t.to(images.device, dtype) for t in (angle, scale, centre))
    cos, sin = angle.cos(), angle.sin()
    cy, cx = centre[:, 0], centre[:, 1]
    # output normalized coords (x_n, y_n) -> pixel offsets from the centre (dx, dy) -> undo the
    # turn -> patch normalized coords (u, v) in [-1, 1] over the scaled patch
    off_x, off_y = image_w / 2 - 0.5 - cx, image_h / 2 - 0.5 - cy
    sx, sy = 2.0 / (patch_w * scale), 2.0 / (patch_h * scale)
    theta = torch.stack(
        [
            torch.stack([cos * image_w / 2 * sx, sin * image_h / 2 * sx, (cos * off_x + sin * off_y) * sx], 1),
            torch.stack([-sin * image_w / 2 * sy, cos * image_h / 2 * sy, (-sin * off_x + cos * off_y) * sy], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [batch, channels, image_h, image_w], align_corners=False).float()
    source = torch.cat([patch.float(), torch.ones_like(patch[:1]).float()], 0).expand(batch, -1, -1, -1)
    sampled = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    canvas, alpha = sampled[:, :channels], sampled[:, channels:]
    return blend(images, canvas, alpha)


def paste_random(
    images: torch.Tensor,
    patch: torch.Tensor,
    scale: Sequence[float] | None = None,
    rotation: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``patch`` at one random place per image (optionally at a random scale and angle), as a
    new tensor. Draws from ``generator`` (on the CPU) or the global RNG."""
    size = (int(patch.shape[-2]), int(patch.shape[-1]))
    if scale is None and not rotation:
        return paste(images, patch, random_positions(len(images), size, images.shape, generator))
    drawn = random_transforms(len(images), size, images.shape, scale, rotation, generator)
    return paste_transformed(images, patch, drawn["centre"], drawn["scale"], drawn["angle"])


# --- the model, frozen ------------------------------------------------------------------------


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


# --- target classes ---------------------------------------------------------------------------


def _synonyms(name: str) -> list[str]:
    """ImageNet names list synonyms: "saltshaker, salt shaker" answers to both."""
    return [part.strip().lower() for part in str(name).split(",") if part.strip()]


def resolve_target(target: int | str, class_names: Sequence[str] | None, num_classes: int | None) -> tuple[int, str | None]:
    """``(index, name)`` of the target class given by index or by name (case-insensitive; any
    comma-separated synonym of an ImageNet name matches)."""
    count = num_classes if num_classes is not None else (len(class_names) if class_names else None)
    names = list(class_names) if class_names else None
    text = str(target).strip()
    if names is not None:
        exact = [i for i, n in enumerate(names) if str(n).strip().lower() == text.lower()]
        if not exact:
            exact = [i for i, n in enumerate(names) if text.lower() in _synonyms(n)]
        if exact:
            return exact[0], str(names[exact[0]])
    if isinstance(target, bool) or not re.fullmatch(r"-?\d+", text):
        if names is None:
            raise AdvlabError(f"target class {target!r} is not an index and neither the model nor the data has class names: give an index")
        choices = {syn: str(n) for n in names for syn in [str(n).lower(), *_synonyms(n)]}
        close = difflib.get_close_matches(text.lower(), list(choices), n=3, cutoff=0.6)
        if close:
            hint = "did you mean " + ", ".join(repr(choices[c]) for c in dict.fromkeys(close)) + "?"
        else:
            hint = f"the {len(names)} class names include " + ", ".join(repr(str(n)) for n in names[:8]) + (", …" if len(names) > 8 else "")
        raise AdvlabError(f"unknown target class {target!r}: {hint} (or give a class index)")
    index = int(text)
    if count is not None and not 0 <= index < count:
        raise AdvlabError(f"target class index {index} is out of range: use 0 … {count - 1}")
    if index < 0:
        raise AdvlabError(f"target class index {index} is out of range: use an index >= 0")
    return index, (str(names[index]) if names is not None and index < len(names) else None)


def slug(text: str) -> str:
    """A file-name-safe form of a class name."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_") or "class"


# --- saved patches ----------------------------------------------------------------------------


def save_patch(path: str | Path, pixels: torch.Tensor, target_index: int, target_name: str | None, **meta: Any) -> Path:
    """The patch's pixels ([0, 1], C×h×w, float32) and what it targets, readable with
    ``torch.load(weights_only=True)``."""
    from advlab.io import save_torch

    payload = {
        "format": PATCH_FORMAT,
        "pixels": pixels.detach().float().cpu().contiguous(),
        "target_index": int(target_index),
        "target_name": target_name,
        **{k: v for k, v in meta.items() if v is not None},
    }
    return save_torch(path, payload)


def load_patch(path: str | Path) -> dict[str, Any]:
    """A patch written by :func:`save_patch` (``weights_only=True``): ``{"pixels", "target_index",
    "target_name", …}``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AdvlabError(f"patch file {str(path)!r} does not exist: give a <model>_<class>_<size>.pt a patch run wrote under patches/ (attack.patch.patch_file)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AdvlabError(f"cannot read patch file {str(path)!r} ({type(exc).__name__}): it must be a .pt written by advlab's patch attack") from None
    if not isinstance(data, dict) or data.get("format") != PATCH_FORMAT or not isinstance(data.get("pixels"), torch.Tensor):
        raise AdvlabError(f"{str(path)!r} is not an advlab patch file: give the .pt file a patch run wrote beside its PNG")
    pixels = data["pixels"]
    if pixels.dim() != 3 or pixels.min() < 0 or pixels.max() > 1:
        raise AdvlabError(f"patch file {str(path)!r} holds no C×h×w image in [0, 1]")
    return data


# --- the config-built attack ------------------------------------------------------------------


def expand_patch_files(patterns: Sequence[str]) -> list[str]:
    """Paths, with glob patterns expanded in sorted order; a pattern that matches nothing fails."""
    files: list[str] = []
    for pattern in map(str, patterns):
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
            if not matches:
                raise AdvlabError(f"attack.patch.patch_file pattern {pattern!r} matches no file: check the run folder")
            files.extend(matches)
        else:
            files.append(pattern)
    return list(dict.fromkeys(files))


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

    Not a per-batch :class:`~advlab.attacks.Attack`: it must be trained first, so the pipeline
    hands it to its own evaluator (:func:`advlab.lit.patch.evaluate_patch`). ``target`` and
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
    evaluator = "advlab.lit.patch.evaluate_patch"
    preflight = "advlab.lit.patch.preflight_patch"

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
            raise AdvlabError(f"attack.patch.optimizer must be a torch optimizer with _partial_: true, got {optimizer!r}")
        self.epochs = _positive_int("epochs", epochs)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.eval_batch_size = _positive_int("eval_batch_size", eval_batch_size if eval_batch_size is not None else batch_size)
        if not 0.0 < float(train_split) < 1.0:
            raise AdvlabError(f"attack.patch.train_split must be between 0 and 1 (exclusive), got {train_split}: the reference uses 0.9")
        self.train_split = float(train_split)
        self.split_seed = int(split_seed)
        self.placements = _positive_int("placements", placements)
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

    def apply(self, images: torch.Tensor, pixels: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``images`` with the patch at one random place each (scaled/turned if configured)."""
        pixels = pixels if pixels is not None else self.pixels
        if pixels is None:
            raise AdvlabError("this PatchAttack holds no patch: train one (advlab.lit.patch.train_patch) or load one (attack.load(path))")
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
        return {"optimizer": getattr(func, "__name__", str(func)), **{k: keywords[k] for k in ("lr", "momentum") if k in keywords}}

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
        what = f"patch_file={self.patch_files}" if self.patch_files else f"target={self.targets}, patch_size={self.sizes}"
        return f"PatchAttack({what}, {', '.join(f'{k}={v!r}' for k, v in self.settings().items() if k != 'attack')})"


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise AdvlabError(f"attack.patch.{name} must be a whole number, got {value!r}") from None
    if number < 1:
        raise AdvlabError(f"attack.patch.{name} must be >= 1, got {value}")
    return number
