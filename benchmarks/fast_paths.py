"""What advlab's fast paths buy, each against the plain path in the same process:

* ``bf16``: PGD with the model's forward/backward under bf16 autocast (perturbation and projection
  fp32, ``advlab.lit.precision.attack_precision``), optionally channels_last, against fp32; with
  the share of images whose adversarial prediction (read in fp32) is the same;
* ``packed``: PGD over several eps and restarts packed into one batched computation
  (``max_batch``) against one run at a time; the results are checked identical;
* ``compile``: PGD on ``torch.compile(model)`` against the eager model, with the compile time
  (first call minus a steady call) and the result checked equal.

    python benchmarks/fast_paths.py --device cpu --batch 200
    python benchmarks/fast_paths.py --device cuda --models resnet101 alexnet --batch 128 --steps 10
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer import channels_last_copy, commit, imagenet_setup, mnist_setup
from timing import load_note, publish, ratio, seconds_per_call

from advlab.attacks import PGD
from advlab.lit.precision import attack_precision, compile_model
from advlab.reports.tables import format_table
from advlab.run import machine

PATHS = ("bf16", "bf16-cl", "packed", "compile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mnist_cnn"])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40, help="PGD steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


@torch.no_grad()
def predictions(model: torch.nn.Module, images: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([model(x).argmax(1) for x in images])


def compare(
    plain: Callable[[], list[torch.Tensor]],
    fast: Callable[[], list[torch.Tensor]],
    model,
    rounds: int,
) -> tuple[float, float, float, float]:
    """``(speed-up median, min, max, prediction agreement)`` of ``fast`` over ``plain``."""
    same = float(predictions(model, fast()).eq(predictions(model, plain())).float().mean())
    times = seconds_per_call({"plain": plain, "fast": fast}, rounds=rounds, warmup=0)
    return (*ratio(times, "plain", "fast"), same)


def measure(path: str, model, x, y, args, device) -> dict[str, object]:
    imagenet = x.shape[1] == 3
    eps = 8 / 255 if imagenet else 0.3
    row: dict[str, object] = {"path": path}
    if path in ("bf16", "bf16-cl"):
        attack = PGD(eps=eps, steps=args.steps, random_start=False)
        fast_model, fast_x = model, x
        if path == "bf16-cl":  # a copy: the plain path keeps the contiguous layout
            fast_model, fast_x = channels_last_copy(model, x)

        def fast() -> list[torch.Tensor]:
            with attack_precision(device.type, "bf16"):
                return [attack(fast_model, fast_x, y)]

        speed, low, high, same = compare(lambda: [attack(model, x, y)], fast, model, args.rounds)
        row["setting"] = f"PGD-{args.steps} L∞ eps {eps:.3g}, fp32 vs bf16 autocast" + (
            " + channels_last" if path == "bf16-cl" else ""
        )
    elif path == "packed":
        eps_list = [e / 255 for e in (2, 4, 8)] if imagenet else [0.1, 0.2, 0.3]
        settings = {"eps": eps_list, "steps": args.steps, "restarts": 2, "seed": 0}
        one, packed = PGD(**settings), PGD(**settings, max_batch=len(x) * 6)
        speed, low, high, same = compare(lambda: one(model, x, y), lambda: packed(model, x, y), model, args.rounds)
        identical = all(torch.equal(a, b) for a, b in zip(one(model, x, y), packed(model, x, y)))
        row["setting"] = f"PGD-{args.steps} L∞, 3 eps × 2 restarts: one at a time vs packed (identical: {identical})"
    else:
        attack = PGD(eps=eps, steps=args.steps, random_start=False)
        compiled = compile_model(model)
        start = time.perf_counter()
        attack(compiled, x, y)  # compiles
        first = time.perf_counter() - start
        start = time.perf_counter()
        attack(compiled, x, y)
        steady = time.perf_counter() - start
        speed, low, high, same = compare(
            lambda: [attack(model, x, y)],
            lambda: [attack(compiled, x, y)],
            model,
            args.rounds,
        )
        row["setting"] = f"PGD-{args.steps} L∞ eps {eps:.3g}, eager vs torch.compile (compile ≈ {first - steady:.1f} s)"
    row.update(
        speedup=round(speed, 2),
        spread=f"{low:.2f}–{high:.2f}",
        agreement=f"{100 * same:.1f} %",
    )
    return row


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before, code = load_note(), commit()  # the code this process loaded
    rows = []
    for name in args.models:
        setup = mnist_setup(args.batch, device) if name == "mnist_cnn" else imagenet_setup(name, args.batch, device)
        model, x, y, _ = setup
        for path in args.paths:
            rows.append(
                {
                    "model": name,
                    "batch": len(x),
                    **measure(path, model, x, y, args, device),
                }
            )
            print(rows[-1], flush=True)
    table = format_table(
        rows,
        ["model", "path", "setting", "batch", "speedup", "spread", "agreement"],
        {
            "speedup": "× plain",
            "spread": "min–max",
            "agreement": "same adv. prediction",
        },
    )
    text = (
        f"Command: `python benchmarks/fast_paths.py {' '.join(map(shlex.quote, argv))}`  \n"
        f"Machine: {machine(device)}. Commit {code}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; "
        f"{load_before} before, {load_note()} after.  \n"
        f"× plain = plain time / fast time, median over {args.rounds} interleaved rounds (min–max); agreement: "
        f"adversarial predictions (read in fp32) equal between the two paths.\n\n{table}\n"
    )
    return publish(text, args.out)


if __name__ == "__main__":
    main()
