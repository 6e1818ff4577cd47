"""MNIST as a Lightning DataModule, held in memory (PROTOCOLS.md §VI).

The 60 000 training images are split, with a seeded generator, into 50 000 for training and
10 000 for validation; the 10 000 test images are the test set. MNIST is 200 MB as float32, so
the tensors stay in memory and the loaders run in the main process: no worker start-up, no
per-batch inter-process copies.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from advlab.errors import AdvlabError

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CLASS_NAMES = [str(d) for d in range(10)]


def mnist_root(data_dir: str | Path) -> Path:
    """The folder torchvision wants as ``root`` (it reads ``root/MNIST/raw``), accepting the
    data folder itself, its ``MNIST`` folder or the ``raw`` folder."""
    path = Path(data_dir).expanduser()
    if path.name == "raw" and path.parent.name == "MNIST":
        return path.parent.parent
    if path.name == "MNIST" and (path / "raw").is_dir():
        return path.parent
    return path


def load_mnist(data_dir: str | Path, train: bool, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images N×1×28×28 float in [0, 1], labels N)`` from torchvision's MNIST reader."""
    from torchvision.datasets import MNIST

    root = mnist_root(data_dir)
    raw = root / "MNIST" / "raw"
    try:
        dataset = MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise _missing(raw, "download is off") from None
        try:
            dataset = MNIST(str(root), train=train, download=True)
        except Exception as exc:  # no network, read-only folder, broken mirror …
            raise _missing(raw, f"download failed: {type(exc).__name__}") from None
    images = dataset.data.unsqueeze(1).float().div_(255.0)
    return images, dataset.targets.long()


def _missing(raw: Path, why: str) -> AdvlabError:
    return AdvlabError(
        f"MNIST not found in {raw} ({why}): put the four IDX files ({', '.join(RAW_FILES)}) there, "
        "or point paths.data_dir (env ADVLAB_DATA_DIR) at a folder holding MNIST/raw"
    )


class MNISTDataModule(L.LightningDataModule):
    """Seeded 50 000/10 000 train/validation split, the official test set for testing.

    ``*_subset`` keep the first N samples of a split (tests and quick runs); ``None`` keeps all.
    """

    num_classes = 10
    class_names = CLASS_NAMES
    image_shape = (1, 28, 28)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 10_000,
        split_seed: int = 42,
        download: bool = True,
        train_subset: int | None = None,
        val_subset: int | None = None,
        test_subset: int | None = None,
    ):
        super().__init__()
        for name, value in {"batch_size": batch_size, "eval_batch_size": eval_batch_size}.items():
            if int(value) < 1:
                raise AdvlabError(f"data.{name} must be >= 1, got {value}")
        if not 0 < int(val_size) < 60_000:
            raise AdvlabError(f"data.val_size must be between 1 and 59999, got {val_size}")
        self.data_dir = data_dir
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.val_size = int(val_size)
        self.split_seed = int(split_seed)
        self.download = download
        self.subsets = {"train": train_subset, "val": val_subset, "test": test_subset}
        self.datasets: dict[str, torch.utils.data.Dataset] = {}

    def prepare_data(self) -> None:
        # Runs once per node before setup(): downloads (if needed) without building tensors twice.
        for train in (True, False):
            load_mnist(self.data_dir, train, self.download)

    def setup(self, stage: str | None = None) -> None:
        if "test" not in self.datasets:
            self.datasets["test"] = TensorDataset(*load_mnist(self.data_dir, False, self.download))
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            full = TensorDataset(*load_mnist(self.data_dir, True, self.download))
            order = torch.randperm(len(full), generator=torch.Generator().manual_seed(self.split_seed))
            n_train = len(full) - self.val_size
            self.datasets["train"] = Subset(full, order[:n_train].tolist())
            self.datasets["val"] = Subset(full, order[n_train:].tolist())

    def _split(self, name: str) -> torch.utils.data.Dataset:
        if name not in self.datasets:
            self.setup("fit" if name != "test" else "test")
        dataset = self.datasets[name]
        limit = self.subsets[name]
        if limit is not None:
            if int(limit) < 1:
                raise AdvlabError(f"data.{name}_subset must be >= 1 or null, got {limit}")
            dataset = Subset(dataset, range(min(int(limit), len(dataset))))
        return dataset

    def _loader(self, name: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self._split(name),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
