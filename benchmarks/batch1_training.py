"""Batch-1 training of the paper's MNIST CNN (the reference protocol's 500 000 steps): advlab's
Lightning training against a plain PyTorch loop, steps/s measured in the same process.

* ``torch``: the least a batch-1 step needs: MNIST tensors in memory, a shuffled index, forward,
  cross-entropy, backward, Adam step, nothing else.
* ``advlab``: ``ClassifierModule`` in the Lightning Trainer that ``advlab.pipeline.trainers``
  builds from the composed ``experiment=paper_mnist_fgsm_reference data.batch_size=1`` config
  (its loggers, progress display and loss history), data from ``MNISTDataModule`` with
  ``resident=true`` (the default: batches sliced from in-memory tensors) and, as
  ``advlab-dataloader``, with ``resident=false`` (a DataLoader over the same tensors).

Each variant trains the Dropout2d CNN with Adam for ``--steps`` steps after ``--warmup`` untimed
ones; variants alternate over ``--repeats`` rounds and the median steps/s is reported, with
``torch / advlab`` (1.00 = no framework overhead; the issue asks for ≤ 1.5).

    python benchmarks/batch1_training.py                         # the full run
    python benchmarks/batch1_training.py --steps 50 --warmup 10 --repeats 1   # smoke test
    python benchmarks/batch1_training.py --batch-size 64 --steps 200 --warmup 20   # the default batch
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from advlab.config import CONF_DIR, instantiate  # noqa: E402
from advlab.data.mnist import load_mnist  # noqa: E402
from advlab.io import write_text  # noqa: E402
from advlab.lit.callbacks import LossHistory  # noqa: E402
from advlab.lit.classifier import ClassifierModule  # noqa: E402
from advlab.models import MnistCNN  # noqa: E402
from advlab.pipeline.trainers import build_trainer  # noqa: E402
from advlab.reports.tables import format_table  # noqa: E402
from advlab.run import machine  # noqa: E402

VARIANTS = ("torch", "advlab", "advlab-dataloader")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per measurement")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="1: the reference protocol; 64: the default recipe's batch"
    )
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps before the timed ones")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the variants; the median is reported")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--data-dir", default=os.environ.get("ADVLAB_DATA_DIR", "data"))
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    return parser.parse_args(argv)


def torch_loop(images: torch.Tensor, labels: torch.Tensor, steps: int, warmup: int, batch: int) -> float:
    """Steps/s of the plain loop (batches of ``batch`` shuffled images sliced from memory)."""
    model = MnistCNN(dropout_kind="dropout2d").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    order = torch.randperm(len(labels))
    per_epoch = len(order) // batch
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        index = order[(i % per_epoch) * batch : (i % per_epoch + 1) * batch]
        x, y = images[index], labels[index]
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


class StepTimer(L.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.steps = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx >= self.warmup:
            self.end = time.perf_counter()
            self.steps = batch_idx - self.warmup + 1


def advlab_config(data_dir: str, out_dir: str, steps: int, warmup: int, resident: bool, batch: int) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "experiment=paper_mnist_fgsm_reference",
                f"data.batch_size={batch}",
                f"data.train_subset={(warmup + steps) * batch}",
                f"data.resident={str(resident).lower()}",
                "trainer.max_epochs=1",
                "trainer.limit_val_batches=0",
                f"paths.data_dir={data_dir}",
                f"paths.output_dir={out_dir}",
            ],
        )


def advlab_fit(data_dir: str, steps: int, warmup: int, resident: bool, batch: int) -> float:
    """Steps/s of advlab's training (one epoch of ``warmup + steps`` batches)."""
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = advlab_config(data_dir, out_dir, steps, warmup, resident, batch)
        L.seed_everything(0, verbose=False)
        datamodule = instantiate(cfg.data)
        model = instantiate(cfg.model)
        module = ClassifierModule(
            model,
            optimizer=partial(torch.optim.Adam, lr=1e-4),
            validation_mode=cfg.training.validation_mode,
        )
        timer = StepTimer(warmup)
        trainer = build_trainer(cfg, "undefended", callbacks=[LossHistory(), timer], enable_checkpointing=False)
        trainer.fit(module, datamodule=datamodule)
    if timer.start is None or timer.end is None or timer.steps != steps:
        raise RuntimeError(f"advlab ran {timer.steps} timed steps, expected {steps}")
    return steps / (timer.end - timer.start)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    images, labels = load_mnist(args.data_dir, train=True, download=False)
    torch.manual_seed(0)
    runs = {
        "torch": lambda: torch_loop(images, labels, args.steps, args.warmup, args.batch_size),
        "advlab": lambda: advlab_fit(args.data_dir, args.steps, args.warmup, True, args.batch_size),
        "advlab-dataloader": lambda: advlab_fit(args.data_dir, args.steps, args.warmup, False, args.batch_size),
    }
    rates: dict[str, list[float]] = {name: [] for name in args.variants}
    for _ in range(args.repeats):  # alternate, so load from other processes hits every variant alike
        for name in args.variants:
            rates[name].append(runs[name]())
    median = {name: statistics.median(values) for name, values in rates.items()}
    baseline = median.get("torch")
    rows = [
        {
            "loop": name,
            "steps/s": f"{median[name]:.0f}",
            "all rounds": ", ".join(f"{v:.0f}" for v in rates[name]),
            "torch / this": f"{baseline / median[name]:.2f}" if baseline else "–",
        }
        for name in args.variants
    ]
    title = (
        f"MNIST CNN (Dropout2d), batch {args.batch_size}, Adam; {args.steps} timed steps after {args.warmup}, "
        f"median of {args.repeats} — {machine('cpu')}"
    )
    text = f"{title}\n{format_table(rows, ['loop', 'steps/s', 'all rounds', 'torch / this'])}\n"
    command = "python benchmarks/batch1_training.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(command.strip())
    print(text)
    if args.out is not None:
        write_text(args.out, text)
    return text


if __name__ == "__main__":
    main()
