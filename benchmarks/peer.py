"""advlab against torchattacks on the same model, batch and machine, in one process.

For each attack both libraries run on the same images with the same settings; the timings are
interleaved round by round (``benchmarks/timing.py``, ``torch.utils.benchmark.Timer``) and the
speed is the median over rounds of torchattacks' time / advlab's time (> 1: advlab is faster).
Agreement is the share of images whose adversarial prediction is the same under both.

Workloads (MNIST, the paper CNN):

* ``fgsm-sweep``: predictions at the paper's nine eps. advlab: one call of its FGSM over the eps
  list as the evaluation runs it (one gradient, then the forwards);
  torchattacks: its per-eps loop, one ``FGSM(eps)`` call and one forward per eps.
* ``pgd-linf``: PGD-40, eps 0.3, step 0.01 (Madry et al.'s MNIST attack), no random start so
  both libraries take the same path and agreement checks the arithmetic.
* ``pgd-linf-fast``: the same PGD-40 with advlab's fast path (bf16 autocast for the model's
  forward and backward, perturbation and projection fp32; channels_last for the 3-channel
  ImageNet models) against torchattacks in fp32, the issue's GPU comparison. Agreement here is
  the fast path's predictions against the fp32 ones (read in fp32).
  For both PGD L∞ rows the "of fwd+bwd" column is PGD's speed as a share of its ceiling: steps ×
  the time of one forward + backward to the input (eval mode, same model, layout and precision)
  over PGD's time. A PGD can not beat that ceiling; 100 % means no overhead at all.
* ``pgd-l2``: PGD in L2, eps 2.0, 40 steps of 0.1, no random start.
* ``cw-l2``: Carlini–Wagner L2, c = 1, 50 Adam steps of lr 0.01, one c (torchattacks has no binary
  search), early abort on in both.
* ``autoattack``: the standard L∞ AutoAttack at eps 0.3 as advlab runs it (APGD-CE, APGD-T with 9
  targets, Square with 5 000 queries; APGD at 100 iterations) against the same three components
  of torchattacks at the same settings, chained by its ``MultiAttack`` (each attack only on the
  images still robust). Agreement here compares robust/broken per image, and the row also gives
  each library's robust accuracy (random starts and Square's sampling differ, so the
  predictions need not agree image by image).
* ``autoattack-ta-standard``: advlab's AutoAttack against torchattacks' own ``AutoAttack(version=
  'standard')`` as shipped: it adds FAB-T but leaves APGD at torchattacks' default of 10
  iterations (not 100), so it is a different, cheaper attack; the row says what each costs.

``--checkpoint`` loads the MNIST CNN's weights from a state dict (an advlab ``undefended.pt`` or
``adversarial.pt``) instead of the short training: AutoAttack's cost grows with the images that
stay robust, so it is measured on a robust model.

The ImageNet models (``--models resnet101 alexnet regnet_y_400mf``, 224², batch 128) run the same
workloads on random images; they need a GPU to finish in reasonable time.

    python benchmarks/peer.py --device cpu --batch 1000               # the MNIST CNN rows
    python benchmarks/peer.py --device cuda --models resnet101 alexnet regnet_y_400mf --batch 128
    python benchmarks/peer.py --batch 32 --rounds 2 --attacks fgsm-sweep   # a quick look

torchattacks is the ``bench`` extra (``pip install --no-deps torchattacks``: it pins an old
``requests`` that advlab does not need). The MNIST CNN's weights come from a short training on
the MNIST training set when ``$ADVLAB_DATA_DIR`` holds it (so the attacks have decisions to
flip), else they are random; the images are MNIST test images, else random.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import load_note, publish, ratio, seconds_per_call

from advlab.attacks import FGSM, PGD, AutoAttack, CarliniWagnerL2
from advlab.errors import AdvlabError
from advlab.lit.precision import attack_precision
from advlab.models import MnistCNN, create_model
from advlab.reports.tables import format_table
from advlab.run import machine

PAPER_EPS = [0.0, 0.007, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3]
ATTACKS = (
    "fgsm-sweep",
    "fgsm-sweep-plain",
    "pgd-linf",
    "pgd-linf-fast",
    "pgd-l2",
    "cw-l2",
    "autoattack",
    "autoattack-ta-standard",
)
# not in the default set: minutes per round on a robust model
SLOW = ("fgsm-sweep-plain", "autoattack", "autoattack-ta-standard")
# in the default set on a GPU only: a CPU without native bf16 emulates it, ~10× slower than fp32
GPU_ONLY = ("pgd-linf-fast",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mnist_cnn"])
    parser.add_argument(
        "--attacks",
        nargs="+",
        choices=ATTACKS,
        default=None,
        help="default: all but the slow ones (AutoAttack, the plain sweep); pgd-linf-fast on a GPU only",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="MNIST CNN weights (a state dict, e.g. adversarial.pt) instead of the short training",
    )
    parser.add_argument("--aa-eps", type=float, default=0.3, help="AutoAttack's L∞ eps")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="timed rounds; the ratio is the median over them",
    )
    parser.add_argument("--pgd-steps", type=int, default=40)
    parser.add_argument("--cw-steps", type=int, default=50)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown report here")
    return parser.parse_args(argv)


# --- model and data ------------------------------------------------------------------------------


def mnist_setup(
    batch: int, device: torch.device, checkpoint: Path | None = None
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    """The paper CNN and MNIST test images: weights from ``checkpoint``, else one short training
    pass (so attacks have decisions to flip); random weights and images when MNIST is absent."""
    from advlab.config import project_root
    from advlab.data.mnist import load_mnist
    from advlab.models.checkpoint import load_weights

    torch.manual_seed(0)
    model = MnistCNN()
    data_dir = os.environ.get("ADVLAB_DATA_DIR", str(Path(project_root()) / "data"))
    try:
        x_test, y_test = load_mnist(data_dir, train=False, download=False)
        x_train, y_train = load_mnist(data_dir, train=True, download=False) if checkpoint is None else (None, None)
    except (AdvlabError, OSError, RuntimeError):
        if checkpoint is not None:
            raise
        x = torch.rand(batch, 1, 28, 28)  # no MNIST: random weights and images (speed is the same)
        y = torch.randint(0, 10, (batch,))
        return model.eval().to(device), x.to(device), y.to(device), "random weights and images"
    if checkpoint is not None:
        load_weights(model, checkpoint, "mnist_cnn")
        how = f"weights {checkpoint}"
    else:
        assert x_train is not None and y_train is not None
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for start in range(0, 6000, 100):  # one pass over 6 000 images: ~90 % test accuracy
            optimizer.zero_grad()
            F.cross_entropy(model(x_train[start : start + 100]), y_train[start : start + 100]).backward()
            optimizer.step()
        how = "trained 1 pass on 6 000 MNIST images"
    return model.eval().to(device), x_test[:batch].to(device), y_test[:batch].to(device), f"{how}; MNIST test images"


def imagenet_setup(
    name: str, batch: int, device: torch.device
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    torch.manual_seed(0)
    model = create_model(name, weights=None).eval().to(device)
    x = torch.rand(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    return model, x, y, "random weights and images"


# --- the workloads -------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def workloads(
    name: str, model, x, y, args
) -> tuple[Callable[[], list[torch.Tensor]], Callable[[], list[torch.Tensor]], str]:
    """``(advlab, torchattacks, settings)``: each callable returns the adversarial predictions
    (one tensor per eps)."""
    import torchattacks

    imagenet = x.shape[1] == 3  # ImageNet-sized models: the usual 8/255 L∞ budget
    if name in ("fgsm-sweep", "fgsm-sweep-plain"):
        eps_list = PAPER_EPS  # in pixel units for every model: speed does not depend on the values
        attack = FGSM(eps=eps_list)

        reuse = name == "fgsm-sweep"

        def ours() -> list[torch.Tensor]:
            # as the evaluation runs it: logits a step carries (eps 0) spare that forward;
            # fgsm-sweep-plain forwards every eps (what the evaluation did before)
            return [
                step.adv_logits.argmax(1) if reuse and step.adv_logits is not None else predict(model, step.x_adv)
                for step in attack.sweep(model, x, y)
            ]

        def theirs() -> list[torch.Tensor]:
            return [predict(model, torchattacks.FGSM(model, eps=eps)(x, y)) for eps in eps_list]

        return ours, theirs, f"{len(eps_list)} eps {[round(e, 4) for e in eps_list]}"
    if name in ("pgd-linf", "pgd-linf-fast", "pgd-l2"):
        linf = name != "pgd-l2"
        eps, step = (8 / 255, 2 / 255) if imagenet and linf else (0.3, 0.01) if linf else (2.0, 0.1)
        attack = PGD(
            eps=eps,
            norm="linf" if linf else "l2",
            steps=args.pgd_steps,
            step_size=step,
            random_start=False,
        )
        peer = (torchattacks.PGD if linf else torchattacks.PGDL2)(
            model, eps=eps, alpha=step, steps=args.pgd_steps, random_start=False
        )
        settings = f"eps {eps:.4g}, {args.pgd_steps} steps of {step:.4g}, no random start"
        if name == "pgd-linf-fast":
            fast_model, fast_x = fast_layout(model, x)

            def ours() -> list[torch.Tensor]:
                with attack_precision(x.device.type, "bf16"):
                    x_adv = attack(fast_model, fast_x, y)
                return [predict(model, x_adv.contiguous())]  # read in fp32, as the plain path

            cl = " + channels_last" if fast_model is not model else ""
            return ours, lambda: [predict(model, peer(x, y))], f"{settings}; advlab bf16{cl}, peer fp32"
        return (
            lambda: [predict(model, attack(model, x, y))],
            lambda: [predict(model, peer(x, y))],
            settings,
        )
    if name in ("autoattack", "autoattack-ta-standard"):
        return autoattack_workloads(name, model, x, y, args)
    attack = CarliniWagnerL2(
        confidence=0.0,
        initial_const=1.0,
        binary_search_steps=1,
        steps=args.cw_steps,
        lr=0.01,
    )
    peer = torchattacks.CW(model, c=1.0, kappa=0.0, steps=args.cw_steps, lr=0.01)
    return (
        lambda: [predict(model, attack(model, x, y))],
        lambda: [predict(model, peer(x, y))],
        f"c 1, {args.cw_steps} Adam steps of lr 0.01, one c, early abort",
    )


def autoattack_workloads(
    name: str, model, x, y, args
) -> tuple[Callable[[], list[torch.Tensor]], Callable[[], list[torch.Tensor]], str]:
    """AutoAttack's rows: each callable returns the robust-or-broken mask per image (True: still
    correctly classified), since AutoAttack's result is that mask, not an image per eps."""
    import torchattacks

    eps = args.aa_eps
    attack = AutoAttack(eps=eps, seed=0)
    if name == "autoattack":
        peer = torchattacks.MultiAttack(
            [
                torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=0, loss="ce"),
                torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=0, n_classes=10),
                torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, seed=0),
            ]
        )
        settings = f"eps {eps:g}: APGD-CE 100, APGD-T 100 × 9 targets, Square 5 000 queries (both)"
    else:
        peer = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        settings = f"eps {eps:g}: advlab standard vs torchattacks AutoAttack('standard': APGD 10 its, +FAB-T)"
    return (
        lambda: [predict(model, attack(model, x, y)).eq(y)],
        lambda: [predict(model, peer(x, y)).eq(y)],
        settings,
    )


def channels_last_copy(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    """channels_last copies of the model and images (the plain path keeps the originals)."""
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)


def fast_layout(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    """The fast path's model and images: channels_last copies for 3-channel image models (where
    it helps convolutions under bf16), the originals otherwise (a 1-channel MNIST image gains
    nothing from it)."""
    if x.dim() != 4 or x.shape[1] != 3:
        return model, x
    return channels_last_copy(model, x)


def input_gradient_seconds(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, rounds: int
) -> float:
    """Median seconds of one forward + backward to the input (no weight gradients, eval mode) at
    ``precision``: the least one PGD step costs, so steps × this is PGD's ceiling."""
    weights = [p for p in model.parameters() if p.requires_grad]
    for p in weights:
        p.requires_grad_(False)
    try:

        def step() -> torch.Tensor:
            x_in = x.detach().requires_grad_(True)
            with attack_precision(x.device.type, precision):
                loss = F.cross_entropy(model(x_in), y)
            return torch.autograd.grad(loss, x_in)[0]

        times = seconds_per_call({"fwd+bwd": step}, rounds=rounds, number=3)["fwd+bwd"]
    finally:
        for p in weights:
            p.requires_grad_(True)
    return sorted(times)[len(times) // 2]


def robust_share(robust: list[torch.Tensor]) -> str:
    return f"{100 * float(robust[0].float().mean()):.1f} %"


def agreement(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    same = sum(int(a.eq(b).sum()) for a, b in zip(ours, theirs))
    return same / sum(a.numel() for a in ours)


def measure(model_name: str, attack_name: str, setup, args, device) -> dict[str, object]:
    model, x, y, _ = setup
    ours, theirs, settings = workloads(attack_name, model, x, y, args)
    first_ours, first_theirs = ours(), theirs()  # also the warm-up
    same = agreement(first_ours, first_theirs)
    times = seconds_per_call({"advlab": ours, "torchattacks": theirs}, rounds=args.rounds, warmup=0)
    speed, low, high = ratio(times, "torchattacks", "advlab")
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    ceiling = ""
    if attack_name in ("pgd-linf", "pgd-linf-fast"):
        fast = attack_name == "pgd-linf-fast"
        ceiling_model, ceiling_x = fast_layout(model, x) if fast else (model, x)
        one = input_gradient_seconds(ceiling_model, ceiling_x, y, "bf16" if fast else "fp32", args.rounds)
        ceiling = f"{100 * args.pgd_steps * one / median['advlab']:.0f} %"
    return {
        "model": model_name,
        "attack": attack_name,
        "settings": settings,
        "batch": len(x),
        "advlab_s": round(median["advlab"], 3),
        "peer_s": round(median["torchattacks"], 3),
        "speedup": round(speed, 2),
        "spread": f"{low:.2f}–{high:.2f}",
        "agreement": f"{100 * same:.1f} %",
        "ceiling": ceiling,
        # AutoAttack returns robust-or-not per image: each library's robust accuracy
        "robust": (
            f"{robust_share(first_ours)} / {robust_share(first_theirs)}" if attack_name.startswith("autoattack") else ""
        ),
    }


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.attacks is None:
        skip = SLOW + (() if device.type == "cuda" else GPU_ONLY)
        args.attacks = [a for a in ATTACKS if a not in skip]
    load_before, code = load_note(), commit()  # the code this process loaded
    rows, notes = [], []
    for model_name in args.models:
        setup = (
            mnist_setup(args.batch, device, args.checkpoint)
            if model_name == "mnist_cnn"
            else imagenet_setup(model_name, args.batch, device)
        )
        notes.append(f"{model_name}: {setup[3]}")
        for attack_name in args.attacks:
            rows.append(measure(model_name, attack_name, setup, args, device))
            print(rows[-1], flush=True)
    table = format_table(
        rows,
        [
            "model",
            "attack",
            "settings",
            "batch",
            "advlab_s",
            "peer_s",
            "speedup",
            "spread",
            "agreement",
            *(["ceiling"] if any(a.startswith("pgd-linf") for a in args.attacks) else []),
            *(["robust"] if any(a.startswith("autoattack") for a in args.attacks) else []),
        ],
        {
            "advlab_s": "advlab s",
            "peer_s": "torchattacks s",
            "speedup": "× torchattacks",
            "spread": "min–max",
            "robust": "robust acc advlab / torchattacks",
            "ceiling": "advlab of fwd+bwd",
        },
    )
    import torchattacks

    text = (
        f"Command: `python benchmarks/peer.py {' '.join(map(shlex.quote, argv))}`  \n"
        f"Machine: {machine(device)}; torchattacks {torchattacks.__version__}; {'; '.join(notes)}.  \n"
        f"Commit {code}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {load_before} before, "
        f"{load_note()} after.  \n"
        f"Median over {args.rounds} interleaved rounds (torch.utils.benchmark.Timer); × torchattacks = "
        f"torchattacks' time / advlab's, round by round (median, and min–max over rounds).\n\n{table}\n"
    )
    return publish(text, args.out)


if __name__ == "__main__":
    main()
