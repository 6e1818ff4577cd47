"""FGSM throughput (images/s) of torchvision classifiers, against the model's own plain
forward + backward as the physical baseline, measured in the same process.

For each model and precision mode it times, on one random batch:

* ``forward``: inference under ``torch.no_grad()``;
* ``forward+backward``: the cross-entropy loss's ``backward()`` through the model with the input
  requiring grad (weights' and input's gradients: a plain training step without the optimizer);
* ``FGSM``: ``advlab.attacks.FGSM`` at one eps, the whole attack as the evaluation runs it
  (eval mode, one forward, the input gradient only, sign step, clamp).

``FGSM / fwd+bwd`` above 1 means the attack costs less than a plain forward + backward (it skips
the weights' gradients). Modes: ``fp32`` and ``bf16-cl`` (bf16 autocast + channels_last, the
attack under the same autocast, as ``evaluation.attack_autocast=true`` runs it).
Weights are random: speed does not depend on their values, and no download is needed.

    python benchmarks/fgsm_throughput.py                          # the full run (GPU)
    python benchmarks/fgsm_throughput.py --batch 4 --size 64 --iters 1 --warmup 1 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import load_note, publish, seconds_per_call  # noqa: E402

from advlab.attacks import FGSM  # noqa: E402
from advlab.models import create_model  # noqa: E402
from advlab.reports.tables import format_table  # noqa: E402
from advlab.run import machine  # noqa: E402

MODES = ("fp32", "bf16-cl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["resnet101", "alexnet", "regnet_y_400mf"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations before each measurement")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds over the three measurements; the median is reported"
    )
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    return parser.parse_args(argv)


def measure(name: str, mode: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    torch.manual_seed(0)
    model = create_model(name, weights=None).to(device).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    channels_last = mode == "bf16-cl"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16-cl" else nullcontext()
    attack = FGSM(eps=args.eps)

    def forward() -> None:
        with torch.no_grad(), autocast:
            model(x)

    def forward_backward() -> None:
        x_var = x.detach().requires_grad_(True)
        with autocast:
            loss = F.cross_entropy(model(x_var).float(), y, reduction="sum")
        loss.backward()
        model.zero_grad(set_to_none=True)

    def fgsm() -> None:
        with autocast:
            attack(model, x, y)

    steps = {"forward": forward, "fwd_bwd": forward_backward, "fgsm": fgsm}
    # rounds alternate between the three, so a drifting machine hits every measurement alike
    seconds = seconds_per_call(steps, rounds=args.repeats, number=args.iters, warmup=args.warmup)
    median = {k: args.batch / statistics.median(v) for k, v in seconds.items()}
    # drop the model and images before emptying the cache; `del` would leave the closures above
    # pointing at unbound names, which the linter flags
    model = x = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "model": name,
        "mode": mode,
        "batch": args.batch,
        "size": args.size,
        "forward": round(median["forward"], 1),
        "fwd_bwd": round(median["fwd_bwd"], 1),
        "fgsm": round(median["fgsm"], 1),
        "ratio": round(median["fgsm"] / median["fwd_bwd"], 3),
    }


def report(rows: list[dict[str, object]], args: argparse.Namespace, device: torch.device, argv: list[str]) -> str:
    command = " ".join(["python benchmarks/fgsm_throughput.py", *map(shlex.quote, argv)])
    table = format_table(
        rows,
        ["model", "mode", "batch", "size", "forward", "fwd_bwd", "fgsm", "ratio"],
        {
            "mode": "precision",
            "size": "image",
            "forward": "forward img/s",
            "fwd_bwd": "fwd+bwd img/s",
            "fgsm": "FGSM img/s",
            "ratio": "FGSM / fwd+bwd",
        },
    )
    notes = (
        f"Command: `{command}`  \n"
        f"Machine: {machine(device)}; float32 matmul precision {torch.get_float32_matmul_precision()!r}, "
        f"cudnn.benchmark {torch.backends.cudnn.benchmark}.  \n"
        f"Median of {args.repeats} rounds × {args.iters} timed iterations (after {args.warmup} warm-up; "
        f"torch.utils.benchmark.Timer) on one random batch; random weights. fp32 = float32; "
        f"bf16-cl = bf16 autocast + channels_last. {load_note()} at the end."
    )
    return f"## FGSM throughput\n\n{notes}\n\n{table}\n"


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    rows = []
    for name in args.models:
        for mode in args.modes:
            rows.append(measure(name, mode, args, device))
            print(
                f"{name} {mode}: forward {rows[-1]['forward']} img/s, fwd+bwd {rows[-1]['fwd_bwd']}, "
                f"FGSM {rows[-1]['fgsm']} (×{rows[-1]['ratio']})",
                flush=True,
            )
    text = report(rows, args, device, argv)
    return publish(text, args.out)


if __name__ == "__main__":
    main()
