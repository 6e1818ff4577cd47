"""MNIST as a Lightning DataModule, held in memory (PROTOCOLS.md §VI).

The 60 000 training images are split, with a seeded generator, into 50 000 for training and
10 000 for validation; the 10 000 test images are the test set. MNIST is 200 MB as float32, so
the tensors stay in memory and the loaders run in the main process: no worker start-up, no
per-batch inter-process copies.

With ``resident=True`` (the default) the training and validation batches are slices of tensors
kept on the training device (:class:`ResidentBatches`), without a DataLoader: at batch size 1
(the reference protocol) the DataLoader's per-sample indexing and collation would cost more than
the network (BENCHMARKS.md, batch-1 training). Its shuffle draws the same random numbers as the
DataLoader's, so both give the same batches in the same order for the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class ResidentBatches:
    """``(images, labels)`` batches sliced from whole tensors (on the training device).

    Each pass shuffles (if asked) with a permutation drawn exactly as a ``DataLoader`` over a
    ``RandomSampler`` draws it from torch's global generator (one draw for the loader's base
    seed, one for the sampler's generator), so a seeded run sees the same batches either way.
    The epoch's shuffled copy is made once; batches are views of it.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool):
        self.images, self.labels = images, labels
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Lazy: nothing is drawn until the first batch is asked for (Lightning calls iter() once
        # just to check the loader is iterable).
        _draw_seed()  # the DataLoader iterator's base seed
        images, labels = self.images, self.labels
        if self.shuffle:  # RandomSampler: a generator seeded from the global one, then randperm
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_draw_seed()))
            order = order.to(labels.device)
            images, labels = images[order], labels[order]
        for start in range(0, len(labels), self.batch_size):
            yield images[start : start + self.batch_size], labels[start : start + self.batch_size]


def _draw_seed() -> int:
    return int(torch.empty((), dtype=torch.int64).random_().item())


class MNISTDataModule(L.LightningDataModule):
    """Seeded 50 000/10 000 train/validation split, the official test set for testing.

    ``*_subset`` keep the first N samples of a split (tests and quick runs); ``None`` keeps all.
    ``resident``: training and validation batches sliced from tensors on the training device
    (:class:`ResidentBatches`; a DataLoader under multi-process training, which shards it).
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
        resident: bool = True,
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
        self.resident = bool(resident)
        self.datasets: dict[str, torch.utils.data.Dataset] = {}
        self._resident: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

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

    def _resident_loader(self, name: str, batch_size: int, shuffle: bool) -> DataLoader | ResidentBatches:
        trainer = self.trainer
        if not self.resident or (trainer is not None and trainer.world_size > 1):
            return self._loader(name, batch_size, shuffle)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        key = (name, str(device))
        if key not in self._resident:
            dataset = self._split(name)
            indices = torch.as_tensor(_indices(dataset))
            images, labels = _base(dataset).tensors
            self._resident[key] = (images[indices].to(device), labels[indices].to(device))
        return ResidentBatches(*self._resident[key], batch_size, shuffle)

    def train_dataloader(self) -> DataLoader | ResidentBatches:
        return self._resident_loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | ResidentBatches:
        return self._resident_loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)


def _indices(dataset: torch.utils.data.Dataset) -> list[int]:
    """Positions in the underlying TensorDataset of a (nested) Subset's items, in order."""
    if isinstance(dataset, Subset):
        inner = _indices(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    return list(range(len(dataset)))


def _base(dataset: torch.utils.data.Dataset) -> TensorDataset:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset
