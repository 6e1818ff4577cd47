"""MNIST DataModule: the seeded 50 000/10 000 split, subsets, and the missing-data error."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from advlab.data import MNISTDataModule
from advlab.errors import AdvlabError


def test_split_sizes_seeded_and_disjoint(mnist_dir):
    dm = MNISTDataModule(data_dir=str(mnist_dir), download=False)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert (len(train), len(val), len(dm.datasets["test"])) == (50_000, 10_000, 10_000)
    assert not set(train.indices) & set(val.indices)
    again = MNISTDataModule(data_dir=str(mnist_dir), download=False)
    again.setup("fit")
    assert again.datasets["val"].indices == val.indices
    other = MNISTDataModule(data_dir=str(mnist_dir), download=False, split_seed=7)
    other.setup("fit")
    assert other.datasets["val"].indices != val.indices


def test_batches_are_unit_range_images(mnist_dir):
    dm = MNISTDataModule(data_dir=str(mnist_dir), download=False, test_subset=130, eval_batch_size=64)
    batches = list(dm.test_dataloader())
    assert [len(b[0]) for b in batches] == [64, 64, 2]
    x, y = batches[0]
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9


def test_accepts_the_mnist_or_raw_folder_itself(mnist_dir):
    from advlab.data.mnist import mnist_root

    raw = mnist_root(mnist_dir) / "MNIST" / "raw"
    for folder in (raw, raw.parent):
        assert mnist_root(folder) == mnist_root(mnist_dir)


def test_missing_dataset_names_folder_and_fix(tmp_path, monkeypatch):
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(AdvlabError, match=rf"MNIST not found in {tmp_path}/MNIST/raw .*ADVLAB_DATA_DIR") as info:
        dm.setup("test")
    assert "\n" not in str(info.value)

    from torchvision.datasets import MNIST

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(AdvlabError, match="download failed: URLError"):
        MNISTDataModule(data_dir=str(tmp_path), download=True).setup("test")


def test_resident_batches_equal_the_dataloader_batches(mnist_dir):
    """Same seed, same batches in the same order, on every epoch: the resident loader draws the
    DataLoader's random numbers, so switching data.resident never changes a training run."""
    from advlab.data.mnist import ResidentBatches

    kwargs = {"data_dir": str(mnist_dir), "download": False, "batch_size": 7, "train_subset": 50, "val_subset": 20}
    resident = MNISTDataModule(**kwargs)
    loader = MNISTDataModule(**kwargs, resident=False)
    assert isinstance(resident.train_dataloader(), ResidentBatches)
    for split in ("train_dataloader", "val_dataloader"):
        torch.manual_seed(0)
        expected = [batch for _ in range(2) for batch in getattr(loader, split)()]
        torch.manual_seed(0)
        got = [batch for _ in range(2) for batch in getattr(resident, split)()]
        assert len(got) == len(expected) and len(getattr(resident, split)()) == len(getattr(loader, split)())
        for (x, y), (x_ref, y_ref) in zip(got, expected, strict=True):
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    torch.manual_seed(1)
    list(loader.train_dataloader())
    after_loader = torch.rand(1)
    torch.manual_seed(1)
    list(resident.train_dataloader())
    assert torch.equal(torch.rand(1), after_loader), "the global generator is left as the DataLoader leaves it"
