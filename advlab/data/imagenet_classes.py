"""ImageNet's 1000 classes and which one each class folder is (see :mod:`advlab.data.imagenet`):
the WordNet-id table, label lists, the folder-name mapping and the check of a folder's layout."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from advlab.class_names import by_name, name_key
from advlab.errors import AdvlabError

NUM_CLASSES = 1000
WNID_FILE = Path(__file__).with_name("imagenet_wnids.txt")
WNID_PATTERN = re.compile(r"^n\d{8}$")


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 WordNet ids in class-index order (from ``imagenet_wnids.txt``, checked)."""
    lines = [line.strip() for line in WNID_FILE.read_text(encoding="utf-8").splitlines()]
    wnids = tuple(line for line in lines if line and not line.startswith("#"))
    # The file is a fact table: a damaged copy must not map classes silently wrong.
    if (
        len(wnids) != NUM_CLASSES
        or len(set(wnids)) != NUM_CLASSES
        or list(wnids) != sorted(wnids)
        or not all(map(WNID_PATTERN.match, wnids))
    ):
        raise AdvlabError(f"{WNID_FILE} is damaged: it must hold the 1000 sorted ImageNet WordNet ids, one per line")
    return wnids


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """torchvision's 1000 ImageNet class names in class-index order (shared by all its weights)."""
    from torchvision.models import AlexNet_Weights

    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def read_label_list(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """``(1000 class names, {wnid: index})`` from a label file: a JSON list of names in index
    order (the protocol's ``label_list.json``) or Keras' ``{"index": [wnid, name]}`` mapping."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdvlabError(
            f"cannot read label list {str(path)!r} ({type(exc).__name__}): "
            "it must be a JSON list of the 1000 class names"
        ) from None
    names: list[str] = []
    wnids: dict[str, int] = {}
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        names = list(data)
    elif isinstance(data, Mapping) and all(
        str(k).isdigit() and isinstance(v, Sequence) and len(v) == 2 for k, v in data.items()
    ):
        for key, (wnid, name) in sorted(data.items(), key=lambda kv: int(kv[0])):
            names.append(str(name))
            wnids[str(wnid)] = int(key)
    if len(names) != NUM_CLASSES:
        raise AdvlabError(
            f"label list {str(path)!r} holds {len(names) or 'no'} class names, not {NUM_CLASSES}: give a JSON list "
            'of the 1000 ImageNet class names in class-index order, or {"0": ["n01440764", "tench"], …}'
        )
    return names, wnids


def map_class_folders(
    folders: Sequence[str], label_names: Sequence[str] | None = None, label_wnids: Mapping[str, int] | None = None
) -> dict[str, int]:
    """``{folder: model output index}``: by WordNet id, class index, or unambiguous class name.

    Raises one line naming the folders that map to no ImageNet class (or to two).
    """
    wnid_index = dict(label_wnids or {}) or {w: i for i, w in enumerate(imagenet_wnids())}
    # exact names first, then case-blind ones; the label list's names before torchvision's
    lists = [label_names, imagenet_categories()] if label_names else [imagenet_categories()]
    name_tables = [(by_name(n, key), key) for key in (str, name_key) for n in lists]
    mapping: dict[str, int] = {}
    unknown: list[str] = []
    ambiguous: list[str] = []
    for folder in folders:
        key = folder.strip()
        if WNID_PATTERN.match(key):
            index = wnid_index.get(key)
        elif key.isdigit():
            index = int(key) if int(key) < NUM_CLASSES else None
        else:
            found = [table[k(key)] for table, k in name_tables if k(key) in table]
            index = found[0] if found else None
            if found and index is None:
                ambiguous.append(folder)
                continue
        if index is None:
            unknown.append(folder)
        else:
            mapping[folder] = index
    if ambiguous:
        raise AdvlabError(
            f"class folder name(s) {few(ambiguous)} name two ImageNet classes: rename them to their WordNet id "
            "or class index"
        )
    if unknown:
        raise AdvlabError(
            f"class folder(s) {few(unknown)} map to no ImageNet class: name each class folder by its WordNet "
            f"id (n01440764), class index (0 … {NUM_CLASSES - 1}) or class name"
        )
    return mapping


def few(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(repr(i) for i in list(items)[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _subfolders(path: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith("."))


def _has_images(path: Path) -> bool:
    from torchvision.datasets.folder import is_image_file

    return any(entry.is_file() and is_image_file(entry.name) for entry in os.scandir(path))


def check_layout(
    root: Path, label_names: Sequence[str] | None, label_wnids: Mapping[str, int] | None
) -> dict[str, int]:
    """The folder mapping of ``root``, or one line saying how the folder is mis-laid."""
    if not root.is_dir():
        raise AdvlabError(
            f"ImageNet folder {str(root)!r} does not exist: set data.data_dir to a folder of class folders "
            "(<wnid or class index>/<images>)"
        )
    folders = _subfolders(root)
    if not folders:
        what = "holds images but no class folders" if _has_images(root) else "is empty"
        raise AdvlabError(
            f"ImageNet folder {str(root)!r} {what}: put each class's images in a subfolder named by its WordNet id "
            "or class index"
        )
    try:
        return map_class_folders(folders, label_names, label_wnids)
    except AdvlabError:
        # A parent of the real folder (train/ and val/ inside it) is the most common slip.
        for child in folders:
            inner = _subfolders(root / child)
            if inner:
                try:
                    map_class_folders(inner, label_names, label_wnids)
                except AdvlabError:
                    continue
                raise AdvlabError(
                    f"{str(root)!r} holds no class folders but {str(root / child)!r} does: "
                    f"set data.data_dir={root / child}"
                ) from None
        raise
