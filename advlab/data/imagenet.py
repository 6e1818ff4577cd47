"""An ImageNet-format image folder as a Lightning DataModule (evaluation only).

Layout: ``<data_dir>/<class folder>/<images>`` (``ImageFolder``), where a class folder is named by

* its WordNet id (``n01443537``), the ILSVRC-2012 layout;
* its class index (``1`` or ``0001``);
* its class name, as in ``label_list.json`` or torchvision's ImageNet categories (``goldfish``).

The paper's protocol (PROTOCOLS.md §IV) uses 5 pre-cropped 224×224 images per class with a
``label_list.json`` of the 1000 class names beside the class folders; that file, when present,
supplies the class names. It may also be Keras' ``imagenet_class_index.json`` form
(``{"1": ["n01443537", "goldfish"], …}``), which then also maps WordNet ids.

Labels are the model's output indices, found from each folder's *name*, never from the folders'
sort order (a folder that holds 37 classes would otherwise get labels 0…36). Images keep
``ImageFolder``'s order (sorted folders, sorted files), so image index *i* is the *i*-th image
there, as in the reference tutorial.

Preprocessing (``preprocess``): ``weights`` applies the model weights' own resize and centre crop
(their normalization stays inside the model); ``to_tensor`` reads pre-cropped images as they are
(the protocol), checking that every image has one size (``image_size``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from advlab.class_names import by_name, name_key
from advlab.errors import AdvlabError

NUM_CLASSES = 1000
WNID_FILE = Path(__file__).with_name("imagenet_wnids.txt")
WNID_PATTERN = re.compile(r"^n\d{8}$")
PREPROCESS = ("weights", "to_tensor")
LABEL_LIST_NAME = "label_list.json"


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 WordNet ids in class-index order (from ``imagenet_wnids.txt``, checked)."""
    lines = [line.strip() for line in WNID_FILE.read_text(encoding="utf-8").splitlines()]
    wnids = tuple(line for line in lines if line and not line.startswith("#"))
    # The file is a fact table: a damaged copy must not map classes silently wrong.
    if len(wnids) != NUM_CLASSES or len(set(wnids)) != NUM_CLASSES or list(wnids) != sorted(wnids) or not all(map(WNID_PATTERN.match, wnids)):
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
        raise AdvlabError(f"cannot read label list {str(path)!r} ({type(exc).__name__}): it must be a JSON list of the 1000 class names") from None
    names: list[str] = []
    wnids: dict[str, int] = {}
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        names = list(data)
    elif isinstance(data, Mapping) and all(str(k).isdigit() and isinstance(v, Sequence) and len(v) == 2 for k, v in data.items()):
        for key, (wnid, name) in sorted(data.items(), key=lambda kv: int(kv[0])):
            names.append(str(name))
            wnids[str(wnid)] = int(key)
    if len(names) != NUM_CLASSES:
        raise AdvlabError(
            f"label list {str(path)!r} holds {len(names) or 'no'} class names, not {NUM_CLASSES}: give a JSON list "
            'of the 1000 ImageNet class names in class-index order, or {"0": ["n01440764", "tench"], …}'
        )
    return names, wnids


def map_class_folders(folders: Sequence[str], label_names: Sequence[str] | None = None, label_wnids: Mapping[str, int] | None = None) -> dict[str, int]:
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
            f"class folder name(s) {_few(ambiguous)} name two ImageNet classes: rename them to their WordNet id "
            "or class index"
        )
    if unknown:
        raise AdvlabError(
            f"class folder(s) {_few(unknown)} map to no ImageNet class: name each class folder by its WordNet "
            f"id (n01440764), class index (0 … {NUM_CLASSES - 1}) or class name"
        )
    return mapping


def _few(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(repr(i) for i in list(items)[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _subfolders(path: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith("."))


def _has_images(path: Path) -> bool:
    from torchvision.datasets.folder import is_image_file

    return any(entry.is_file() and is_image_file(entry.name) for entry in os.scandir(path))


def check_layout(root: Path, label_names: Sequence[str] | None, label_wnids: Mapping[str, int] | None) -> dict[str, int]:
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
                    f"{str(root)!r} holds no class folders but {str(root / child)!r} does: set data.data_dir={root / child}"
                ) from None
        raise


def _image_folder(root: Path, mapping: Mapping[str, int], transform: Any) -> Any:
    from torchvision.datasets import ImageFolder

    class MappedImageFolder(ImageFolder):
        """``ImageFolder`` whose labels come from the folder names' mapping, not their order."""

        def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
            return sorted(mapping), dict(mapping)

    return MappedImageFolder(str(root), transform=transform, allow_empty=True)


def weights_transform(model_name: str | None, weights: str | None) -> Any:
    """The weights' resize and centre crop, then [0, 1] tensors: their preprocessing minus the
    normalization (the model normalizes inside)."""
    from torchvision import transforms as T

    from advlab.models.torchvision_models import preprocessing

    if not model_name:
        raise AdvlabError("data.preprocess=weights needs data.model_name (a torchvision model): or use data.preprocess=to_tensor")
    preset = preprocessing(str(model_name), weights)
    return T.Compose(
        [
            T.Resize(preset.resize_size, interpolation=preset.interpolation, antialias=preset.antialias),
            T.CenterCrop(preset.crop_size),
            T.ToTensor(),
        ]
    )


class ImageNetFolderDataModule(L.LightningDataModule):
    """An ImageNet-format folder for evaluation: ``test_dataloader()`` covers every image.

    Args:
        data_dir: the folder of class folders.
        preprocess: ``weights`` (the weights' resize + centre crop of ``model_name``/``weights``)
            or ``to_tensor`` (pre-cropped images as they are).
        model_name, weights: the model whose weights' preprocessing ``weights`` mode applies
            (the config passes ``model.name`` and ``model.weights``).
        image_size: ``to_tensor`` only: the side every image must have (``None``: any one size).
        label_list: class-name file; default ``<data_dir>/label_list.json`` when it exists.
        batch_size, num_workers: of the loader.
        test_subset: keep N images evenly spread over the folder (quick runs); ``None`` keeps all.
    """

    num_classes = NUM_CLASSES

    def __init__(
        self,
        data_dir: str,
        preprocess: str = "weights",
        model_name: str | None = None,
        weights: str | None = "DEFAULT",
        image_size: int | None = 224,
        label_list: str | None = None,
        batch_size: int = 64,
        num_workers: int = 4,
        test_subset: int | None = None,
    ):
        super().__init__()
        if preprocess not in PREPROCESS:
            raise AdvlabError(f"unknown data.preprocess {preprocess!r}: use 'weights' (the weights' resize and crop) or 'to_tensor' (pre-cropped images)")
        if int(batch_size) < 1:
            raise AdvlabError(f"data.batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise AdvlabError(f"data.num_workers must be >= 0, got {num_workers}")
        if test_subset is not None and int(test_subset) < 1:
            raise AdvlabError(f"data.test_subset must be >= 1 or null, got {test_subset}")
        self.data_dir = Path(data_dir).expanduser()
        self.preprocess = preprocess
        self.model_name = model_name
        self.weights = weights
        self.image_size = None if image_size is None else int(image_size)
        self.label_list = label_list
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.test_subset = None if test_subset is None else int(test_subset)
        self.dataset: Any = None  # the whole folder, built by setup()
        self._class_names: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self.setup("test")
        return list(self._class_names or [])

    def _label_file(self) -> Path | None:
        if self.label_list:
            path = Path(self.label_list).expanduser()
            if not path.is_file():
                raise AdvlabError(f"label list {str(path)!r} does not exist: set data.label_list to a JSON file of the 1000 class names, or null")
            return path
        default = self.data_dir / LABEL_LIST_NAME
        return default if default.is_file() else None

    def _transform(self) -> Any:
        from torchvision import transforms as T

        if self.preprocess == "weights":
            return weights_transform(self.model_name, self.weights)
        return T.ToTensor()

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        label_file = self._label_file()
        names, wnids = read_label_list(label_file) if label_file else (None, None)
        mapping = check_layout(self.data_dir, names, wnids)
        dataset = _image_folder(self.data_dir, mapping, self._transform())
        found = {Path(path).relative_to(self.data_dir).parts[0] for path, _ in dataset.samples}
        empty = sorted(set(mapping) - found)
        if empty:
            raise AdvlabError(f"class folder(s) {_few(empty)} in {str(self.data_dir)!r} hold no images (.jpg, .png, …): add images or remove them")
        if self.preprocess == "to_tensor":
            self._check_sizes(dataset.samples)
        self._class_names = list(names or imagenet_categories())
        self.dataset = dataset

    def _check_sizes(self, samples: Sequence[tuple[str, int]]) -> None:
        """``to_tensor`` batches images as they are: they must share one size (read from headers)."""
        from PIL import Image

        expected = (self.image_size, self.image_size) if self.image_size else None
        for path, _ in samples:
            with Image.open(path) as image:
                size = image.size
            expected = expected or size
            if size != expected:
                raise AdvlabError(
                    f"image {path} is {size[0]}×{size[1]}, not {expected[0]}×{expected[1]}: data.preprocess=to_tensor "
                    "takes pre-cropped images of one size; use data.preprocess=weights to resize and crop"
                )

    def train_dataloader(self) -> DataLoader:
        raise AdvlabError(
            "data=imagenet_folder is an evaluation set with nothing to train on: give pretrained model.weights, "
            "or set training=null to evaluate the model as built"
        )

    def test_dataloader(self) -> DataLoader:
        self.setup("test")
        dataset = self.dataset
        if self.test_subset is not None and self.test_subset < len(dataset):
            # evenly spread, so a quick run still sees many classes (the folder is sorted by class)
            picks = torch.linspace(0, len(dataset) - 1, self.test_subset).round().long().unique().tolist()
            dataset = Subset(dataset, picks)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
