"""Shared fixtures: the MNIST folder, a briefly trained CNN, and Hydra-composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from advlab.config import CONF_DIR
from advlab.data.mnist import load_mnist, mnist_root
from advlab.models import MnistCNN

ROOT = Path(__file__).resolve().parent.parent


def _find_mnist() -> Path | None:
    candidates = [os.environ.get("ADVLAB_DATA_DIR"), ROOT.parent / "shared" / "datasets", ROOT / "data"]
    for candidate in filter(None, candidates):
        if (mnist_root(candidate) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    found = _find_mnist()
    if found is None:
        pytest.skip("MNIST raw files not found: set ADVLAB_DATA_DIR to a folder holding MNIST/raw")
    return found


@pytest.fixture(scope="session")
def mnist_test(mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist(mnist_dir, train=False, download=False)


@pytest.fixture(scope="session")
def trained_cnn(mnist_dir: Path) -> MnistCNN:
    """The paper's CNN after one quick pass over 8 000 training images (~97 % would take longer;
    this reaches ~90 %, enough for attacks to have something to break)."""
    torch.manual_seed(0)
    x, y = load_mnist(mnist_dir, train=True, download=False)
    model = MnistCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for start in range(0, 8000, 100):
        optimizer.zero_grad()
        F.cross_entropy(model(x[start : start + 100]), y[start : start + 100]).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture
def test_batch(mnist_test: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = mnist_test
    return x[:256].clone(), y[:256].clone()


# Overrides that turn any experiment into a few-second job on the CPU.
QUICK = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "+trainer.enable_progress_bar=false",
    "data.train_subset=2000",
    "training.optimizer.lr=0.001",
    "data.val_subset=256",
    "data.test_subset=300",
    "data.batch_size=64",
    "data.eval_batch_size=100",
]


@pytest.fixture
def make_cfg(tmp_path: Path, mnist_dir: Path):
    """``make_cfg(*overrides)`` → a composed config writing into a fresh tmp folder."""

    def _make(*overrides: str, quick: bool = True) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(
                "config",
                overrides=[
                    *(QUICK if quick else []),
                    f"paths.data_dir={mnist_dir}",
                    f"paths.output_dir={tmp_path / 'run'}",
                    *overrides,
                ],
            )

    return _make
