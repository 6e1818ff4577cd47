"""Saved patches: the file format (``torch.load(weights_only=True)``-readable), and the list of
patch files a transfer run evaluates (glob patterns expanded)."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from advlab.errors import AdvlabError
from advlab.io import save_torch

PATCH_FORMAT = "advlab-patch-1"


def slug(text: str) -> str:
    """A file-name-safe form of a class name."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_") or "class"


def save_patch(path: str | Path, pixels: torch.Tensor, target_index: int, target_name: str | None, **meta: Any) -> Path:
    """The patch's pixels ([0, 1], C×h×w, float32) and what it targets, readable with
    ``torch.load(weights_only=True)``."""
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
        raise AdvlabError(
            f"patch file {str(path)!r} does not exist: give a <model>_<class>_<size>.pt a patch run wrote "
            "under patches/ (attack.patch.patch_file)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AdvlabError(
            f"cannot read patch file {str(path)!r} ({type(exc).__name__}): "
            "it must be a .pt written by advlab's patch attack"
        ) from None
    if (
        not isinstance(data, dict)
        or data.get("format") != PATCH_FORMAT
        or not isinstance(data.get("pixels"), torch.Tensor)
    ):
        raise AdvlabError(
            f"{str(path)!r} is not an advlab patch file: give the .pt file a patch run wrote beside its PNG"
        )
    pixels = data["pixels"]
    if pixels.dim() != 3 or pixels.min() < 0 or pixels.max() > 1:
        raise AdvlabError(f"patch file {str(path)!r} holds no C×h×w image in [0, 1]")
    return data


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
