"""The ImageNet-format folder: labels from folder names (never their order), the label-list layout
of the paper's protocol, preprocessing, and one-line errors for mis-laid folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advlab.data.imagenet import (
    imagenet_categories,
    imagenet_wnids,
    map_class_folders,
    read_label_list,
)
from advlab.errors import AdvlabError
from helpers import make_folder, module


def test_wnid_table_is_imagenet_index_order():
    wnids = imagenet_wnids()
    assert len(set(wnids)) == 1000 and list(wnids) == sorted(wnids)
    assert (wnids[0], wnids[1], wnids[999]) == ("n01440764", "n01443537", "n15075141")
    # Independent check: torchvision's Imagenette names ten ImageNet classes by wnid.
    from torchvision.datasets.imagenette import Imagenette

    for wnid, names in Imagenette._WNID_TO_CLASS.items():
        assert imagenet_categories()[wnids.index(wnid)] == names[0]


@pytest.mark.parametrize("naming", ["wnid", "index", "name"])
def test_labels_come_from_folder_names_in_any_order(tmp_path, naming):
    classes = [990, 3, 500, 1, 17]
    root = make_folder(tmp_path / "data", classes, naming=naming, seed=len(naming))
    dm = module(root)
    dataset = dm.dataset
    assert sorted(set(dataset.targets)) == sorted(classes)  # sort order alone would give 0 … 4
    for path, label in dataset.samples:
        folder = Path(path).parent.name
        expected = {"wnid": imagenet_wnids().index(folder) if naming == "wnid" else None, "index": int(folder) if naming == "index" else None, "name": imagenet_categories().index(folder) if naming == "name" else None}[naming]
        assert label == expected
    # image order is ImageFolder's: sorted folders, then sorted files (the paper's image indices)
    assert [p for p, _ in dataset.samples] == sorted(p for p, _ in dataset.samples)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape[1:] == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and y.tolist() == dataset.targets[:4]
    assert dm.num_classes == 1000 and dm.class_names == list(imagenet_categories())


def test_protocol_layout_with_label_list(tmp_path):
    """The paper's layout: wnid folders, label_list.json of the 1000 names beside them."""
    root = make_folder(tmp_path / "TinyImageNet", [5, 1, 3, 0, 4, 2], per_class=5, label_list=True)
    dm = module(root)
    assert dm.class_names[3] == "label 3" and len(dm.class_names) == 1000
    # the paper's image indices: 5 images per class, sorted → image 7 is the 3rd of class 1
    path, label = dm.dataset.samples[7]
    assert label == 1 and path.endswith("n01443537/img2.png")
    # folders named by the label list's names map through it
    renamed = tmp_path / "by_label"
    (renamed / "label 42").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(renamed / "label 42" / "a.png")
    (renamed / "label_list.json").write_text((root / "label_list.json").read_text())
    assert module(renamed).dataset.targets == [42]


def test_keras_class_index_file_maps_wnids(tmp_path):
    table = {str(i): [w, f"name_{i}"] for i, w in enumerate(imagenet_wnids())}
    path = tmp_path / "imagenet_class_index.json"
    path.write_text(json.dumps(table))
    names, wnids = read_label_list(path)
    assert names[2] == "name_2" and wnids["n01484850"] == 2
    assert map_class_folders(["n01484850", "name_7"], names, wnids) == {"n01484850": 2, "name_7": 7}


def test_weights_preprocessing_is_the_presets_minus_normalization(tmp_path):
    from torchvision.models import AlexNet_Weights

    root = tmp_path / "data"
    (root / "n01443537").mkdir(parents=True)
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    picture.save(root / "n01443537" / "a.png")
    dm = module(root, preprocess="weights", model_name="alexnet", weights="IMAGENET1K_V1")
    x, y = dm.dataset[0]
    assert x.shape == (3, 224, 224) and y == 1 and 0 <= x.min() and x.max() <= 1
    preset = AlexNet_Weights.IMAGENET1K_V1.transforms()
    normalized = preset(Image.open(root / "n01443537" / "a.png").convert("RGB"))
    mean, std = torch.tensor(preset.mean).view(3, 1, 1), torch.tensor(preset.std).view(3, 1, 1)
    assert torch.allclose(normalized * std + mean, x, atol=1e-5)


def test_test_subset_spreads_over_the_folder(tmp_path):
    root = make_folder(tmp_path / "data", range(10), per_class=3)
    dm = module(root, test_subset=5)
    labels = torch.cat([y for _, y in dm.test_dataloader()])
    assert len(labels) == 5 and len(set(labels.tolist())) == 5


def _error(callable_, *args, **kwargs) -> str:
    with pytest.raises(AdvlabError) as info:
        callable_(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_mislaid_folders_fail_in_one_line(tmp_path):
    assert "does not exist" in _error(module, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "is empty" in _error(module, tmp_path / "empty")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (8, 8)).save(loose / "a.png")
    assert "holds images but no class folders" in _error(module, loose)
    parent = tmp_path / "parent"
    make_folder(parent / "val", [1, 2])
    (parent / "train").mkdir()
    assert f"set data.data_dir={parent / 'val'}" in _error(module, parent)
    unknown = make_folder(tmp_path / "unknown", [1])
    (unknown / "cats").mkdir()
    (unknown / "n99999999").mkdir()
    text = _error(module, unknown)
    assert "'cats', 'n99999999'" in text and "map to no ImageNet class" in text
    hollow = make_folder(tmp_path / "hollow", [1])
    (hollow / "n01440764").mkdir()
    assert "'n01440764'" in _error(module, hollow) and "hold no images" in _error(module, hollow)


def test_bad_settings_fail_in_one_line(tmp_path):
    root = make_folder(tmp_path / "data", [1, 2], size=32)
    assert "not 64×64" in _error(module, root, image_size=64)
    Image.new("RGB", (40, 32)).save(root / "n01443537" / "odd.png")
    assert "is 40×32, not 32×32" in _error(module, root)
    assert "unknown data.preprocess" in _error(module, root, preprocess="crop")
    (tmp_path / "short.json").write_text(json.dumps(["a", "b"]))
    assert "holds 2 class names, not 1000" in _error(module, root, label_list=str(tmp_path / "short.json"))
    assert "has no torchvision weights" in _error(module, root, preprocess="weights", model_name="mnist_cnn")
    assert "nothing to train on" in _error(module(make_folder(tmp_path / "ok", [1])).train_dataloader)
    assert "name two ImageNet classes" in _error(map_class_folders, ["CARDIGAN"])
