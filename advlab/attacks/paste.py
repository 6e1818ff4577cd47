"""Where a patch goes and how it is pasted: the patch's pixel map, placements (corners, or a
scale, angle and centre per image), and the paste itself on [0, 1] images. Plain PyTorch.

The patch is a free parameter ``p`` shown as pixels ``(tanh(p) + 1) / 2`` in [0, 1], so SGD can
move it anywhere without clamping (the reference protocol, PROTOCOLS.md §IV). Pasting is done in
pixel space on [0, 1] images; the model normalizes inside, which is the same as the reference
pasting the normalized patch into the normalized image.

Every paste returns a new tensor and never writes into the images it is given: the reference
pastes its evaluation placements into one tensor in place, so its placements 2–4 stack several
patches on one image. Here each placement starts from the clean image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from advlab.attacks.checks import check_images
from advlab.errors import AdvlabError


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
        raise AdvlabError(
            f"patch_size must be a whole number of pixels or [height, width], got {patch_size!r}"
        ) from None
    if height < 1 or width < 1:
        raise AdvlabError(f"patch_size must be >= 1 pixel, got {patch_size!r}")
    return height, width


def check_fits(
    size: tuple[int, int], image_hw: Sequence[int], scale: Sequence[float] | None = None, rotation: float = 0.0
) -> None:
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
        raise AdvlabError(
            f"patch {size[0]}×{size[1]} px is larger than the {image_h}×{image_w} px images{extra}: {fix}"
        )


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
    """``images`` (B×C×H×W, [0, 1]) with ``patch`` (C×h×w) pasted at ``positions`` (B×2 top-left
    corners, one per image), as a new tensor; differentiable in ``patch``.

    Vectorised: each output pixel looks up the patch pixel under it (an index gather), and a
    boolean mask keeps the image wherever the patch is not.
    """
    check_images(images)
    return _paste(images, patch, positions)


def _paste(images: torch.Tensor, patch: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    batch, _, image_h, image_w = images.shape
    patch_h, patch_w = patch.shape[-2:]
    if positions.shape != (batch, 2):
        raise AdvlabError(
            f"paste needs one (top, left) position per image: got shape {tuple(positions.shape)} for {batch} images"
        )
    # checked on the CPU copy the placement functions return: no device sync per paste
    if (
        (positions < 0).any()
        or (positions[:, 0] > image_h - patch_h).any()
        or (positions[:, 1] > image_w - patch_w).any()
    ):
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
    centre_y = (
        half_h
        - 1
        + torch.rand(count, generator=generator, dtype=torch.float64) * (image_h + 1 - 2 * half_h).clamp(min=0)
    )
    centre_x = (
        half_w
        - 1
        + torch.rand(count, generator=generator, dtype=torch.float64) * (image_w + 1 - 2 * half_w).clamp(min=0)
    )
    return {"centre": torch.stack([centre_y, centre_x], 1), "scale": scales, "angle": angles}


def paste_transformed(
    images: torch.Tensor, patch: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor
) -> torch.Tensor:
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
    check: bool = True,
) -> torch.Tensor:
    """``patch`` at one random place per image (optionally at a random scale and angle), as a
    new tensor. Draws from ``generator`` (on the CPU) or the global RNG. ``check=False`` skips
    the [0, 1] check of the images (for training loops whose data was checked once)."""
    if check:
        check_images(images)
    size = (int(patch.shape[-2]), int(patch.shape[-1]))
    if scale is None and not rotation:
        return _paste(images, patch, random_positions(len(images), size, images.shape, generator))
    drawn = random_transforms(len(images), size, images.shape, scale, rotation, generator)
    return paste_transformed(images, patch, drawn["centre"], drawn["scale"], drawn["angle"])
