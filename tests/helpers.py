"""Helpers shared by several test files (tests never import each other): a synthetic
ImageNet-format folder and its data module."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from advlab.data.imagenet import ImageNetFolderDataModule, imagenet_categories, imagenet_wnids


def make_folder(root: Path, classes: Iterable[int], per_class: int = 2, size: int = 32, naming: str = "wnid", label_list: bool = False, seed: int = 0) -> Path:
    """A synthetic ImageNet-format folder: ``per_class`` random PNGs per class, class folders
    named by ``naming`` (``wnid``, ``index`` or ``name``) and created in shuffled order."""
    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()
    classes = list(classes)
    random.Random(seed).shuffle(classes)
    for c in classes:
        folder = root / {"wnid": wnids[c], "index": str(c), "name": imagenet_categories()[c]}[naming]
        folder.mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{j}.png")
    if label_list:
        (root / "label_list.json").write_text(json.dumps([f"label {i}" for i in range(1000)]))
    return root


def module(root: Path, **kwargs) -> ImageNetFolderDataModule:
    kwargs = {"preprocess": "to_tensor", "image_size": None, "num_workers": 0, "batch_size": 4, **kwargs}
    dm = ImageNetFolderDataModule(str(root), **kwargs)
    dm.setup("test")
    return dm
