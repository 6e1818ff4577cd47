"""Patch-training throughput (images/s), against a baseline measured in the same process.

Three loops over the same pre-made batches, per precision (fp32, bf16 autocast):

- ``baseline``: forward + backward to the input of the frozen model — the least any patch
  step must compute (no paste, no optimiser, no Lightning);
- ``patch (torch)``: a full patch step in plain PyTorch — random paste, forward, backward to
  the patch parameter, SGD step;
- ``patch (lightning)``: the same step as advlab trains it, :class:`advlab.lit.patch.PatchTraining`
  under a Lightning ``Trainer`` (precision ``32-true`` or ``bf16-mixed``).

The ratios to the baseline say what pasting and Lightning cost. Images are random (speed does
not depend on content) and the model is random-initialised (same cost as trained weights).

    python benchmarks/patch_throughput.py                     # ResNet-101, 224 px, batch 32, GPU
    python benchmarks/patch_throughput.py --tiny              # seconds on a CPU: resnet18, 64 px
    python benchmarks/patch_throughput.py --json out.json     # also write the numbers
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import load_note  # noqa: E402

from advlab.attacks.patch import frozen, paste_random, patch_objective, patch_pixels  # noqa: E402
from advlab.lit.patch import PatchTraining  # noqa: E402
from advlab.models import create_model  # noqa: E402
from advlab.run import machine  # noqa: E402

PRECISIONS = {"fp32": ("32-true", None), "bf16": ("bf16-mixed", torch.bfloat16)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet101")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    parser.add_argument("--precision", nargs="+", choices=sorted(PRECISIONS), default=["fp32", "bf16"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: resnet18, 64 px, batch 4, 4 steps")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.model, args.image_size, args.patch_size, args.batch_size, args.steps, args.warmup = (
            "resnet18",
            64,
            16,
            4,
            4,
            2,
        )
        args.device = "cpu" if args.device == "auto" else args.device
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batches(args: argparse.Namespace, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``warmup + steps`` batches, cycling over 4 distinct ones already on the device."""
    generator = torch.Generator().manual_seed(0)
    distinct = [
        (
            torch.rand(args.batch_size, 3, args.image_size, args.image_size, generator=generator).to(device),
            torch.zeros(args.batch_size, dtype=torch.long, device=device),
        )
        for _ in range(4)
    ]
    return [distinct[i % 4] for i in range(args.warmup + args.steps)]


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def time_loop(step, batches, warmup: int, device: torch.device) -> float:
    """Seconds for the timed batches (``torch.utils.benchmark.Timer``, which synchronizes CUDA)."""
    for batch in batches[:warmup]:
        step(batch)
    timed = batches[warmup:]

    def loop() -> None:
        for batch in timed:
            step(batch)

    return benchmark.Timer(stmt="loop()", globals={"loop": loop}, num_threads=torch.get_num_threads()).timeit(1).mean


def baseline(model, batches, args, device, dtype) -> float:
    def step(batch):
        x = batch[0].detach().requires_grad_(True)
        with autocast(device, dtype):
            loss = patch_objective(model(x), 0)
        (grad,) = torch.autograd.grad(loss, x)
        return grad

    return time_loop(step, batches, args.warmup, device)


def patch_torch(model, batches, args, device, dtype) -> float:
    parameter = torch.zeros(3, args.patch_size, args.patch_size, device=device, requires_grad=True)
    optimizer = torch.optim.SGD([parameter], lr=0.1, momentum=0.8)

    def step(batch):
        with autocast(device, dtype):
            loss = patch_objective(model(paste_random(batch[0], patch_pixels(parameter))), 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return time_loop(step, batches, args.warmup, device)


class StepTimer(L.Callback):
    """Wall time from the first timed batch to the end of the last one. (The timed window lies
    inside ``trainer.fit``, which a ``torch.utils.benchmark.Timer`` statement cannot enclose
    without timing Lightning's setup too; the callback reads the same clock.)"""

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device = warmup, device
        self.start = self.end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        synchronize(self.device)
        self.end = time.perf_counter()


def patch_lightning(model, batches, args, device, precision: str) -> float:
    timer = StepTimer(args.warmup, device)
    module = PatchTraining(
        model, (args.patch_size, args.patch_size), 3, 0, partial(torch.optim.SGD, lr=0.1, momentum=0.8)
    )
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision=precision,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    # batch_size=None: the loader hands over the pre-made device batches as they are
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    with frozen(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader)
    return timer.end - timer.start


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    model = create_model(args.model, weights=None).to(device).eval()
    batches = make_batches(args, device)
    images = args.steps * args.batch_size
    results = []
    for name in args.precision:
        precision, dtype = PRECISIONS[name]
        with frozen(model):
            base = baseline(model, batches, args, device, dtype)
            plain = patch_torch(model, batches, args, device, dtype)
        lit = patch_lightning(model, batches, args, device, precision)
        model.to(device)  # Lightning's teardown moved it back to the CPU
        for mode, seconds in (("baseline fwd+bwd", base), ("patch (torch)", plain), ("patch (lightning)", lit)):
            results.append(
                {"precision": name, "loop": mode, "images_per_s": images / seconds, "vs_baseline": base / seconds}
            )
    header = (
        f"{args.model}, {args.image_size} px, batch {args.batch_size}, patch {args.patch_size} px, "
        f"{args.steps} timed steps after {args.warmup} — {machine(device)}; {load_note()}"
    )
    print(header)
    print("| precision | loop | images/s | × baseline |\n|---|---|---:|---:|")
    for row in results:
        print(f"| {row['precision']} | {row['loop']} | {row['images_per_s']:.1f} | {row['vs_baseline']:.2f} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"setup": header, "args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2
            )
            + "\n"
        )
    return results


if __name__ == "__main__":
    main()
