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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from advlab.data.imagenet_classes import (
    NUM_CLASSES,
    check_layout,
    few,
    imagenet_categories,
    imagenet_wnids,
    map_class_folders,
    read_label_list,
)
from advlab.errors import AdvlabError

PREPROCESS = ("weights", "to_tensor")
LABEL_LIST_NAME = "label_list.json"

__all__ = [
    "NUM_CLASSES",
    "ImageNetFolderDataModule",
    "check_layout",
    "imagenet_categories",
    "imagenet_wnids",
    "map_class_folders",
    "read_label_list",
    "weights_transform",
]


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
        raise AdvlabError(
            "data.preprocess=weights needs data.model_name (a torchvision model): or use data.preprocess=to_tensor"
        )
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
            raise AdvlabError(
                f"unknown data.preprocess {preprocess!r}: use 'weights' (the weights' resize and crop) "
                "or 'to_tensor' (pre-cropped images)"
            )
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
                raise AdvlabError(
                    f"label list {str(path)!r} does not exist: "
                    "set data.label_list to a JSON file of the 1000 class names, or null"
                )
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
            raise AdvlabError(
                f"class folder(s) {few(empty)} in {str(self.data_dir)!r} hold no images (.jpg, .png, …): "
                "add images or remove them"
            )
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
