"""Helpers shared by several test files (tests never import each other): a synthetic
ImageNet-format folder and its data module; hand-made advlab job folders; the ``advlab`` command
run in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from advlab.data.imagenet import ImageNetFolderDataModule, imagenet_categories, imagenet_wnids


def make_folder(
    root: Path,
    classes: Iterable[int],
    per_class: int = 2,
    size: int = 32,
    naming: str = "wnid",
    label_list: bool = False,
    seed: int = 0,
) -> Path:
    """A synthetic ImageNet-format folder: ``per_class`` random PNGs per class, class folders
    named by ``naming`` (``wnid``, ``index`` or ``name``) and created in shuffled order."""
    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()
    classes = list(classes)
    random.Random(seed).shuffle(classes)
    for c in classes:
        folder = root / {"wnid": wnids[c], "index": str(c), "name": imagenet_categories()[c]}[naming]
        folder.mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{j}.png")
    if label_list:
        (root / "label_list.json").write_text(json.dumps([f"label {i}" for i in range(1000)]))
    return root


def module(root: Path, **kwargs) -> ImageNetFolderDataModule:
    kwargs = {"preprocess": "to_tensor", "image_size": None, "num_workers": 0, "batch_size": 4, **kwargs}
    dm = ImageNetFolderDataModule(str(root), **kwargs)
    dm.setup("test")
    return dm


# --- synthetic job folders, in the schema advlab.run writes ------------------------------------


def eps_results(
    accuracies: dict[float, float], model: str = "undefended", defense: str = "none", clean: float = 0.98
) -> dict:
    rows = [
        {
            "eps": eps,
            "n": 100,
            "correct": round(acc * 100),
            "top1_acc": acc,
            "top5_acc": min(1.0, acc + 0.2),
            "top1_err": 1 - acc,
            "top5_err": max(0.0, 0.8 - acc),
            "max_linf": eps,
            "zero_grad_share": 0.0,
        }
        for eps, acc in accuracies.items()
    ]
    return {
        "status": "completed",
        "task_name": "t",
        "models": {
            model: {
                "architecture": "mnist_cnn",
                "defense": defense,
                "evaluation": {
                    "clean": {
                        "n": 100,
                        "correct": round(clean * 100),
                        "top1_acc": clean,
                        "top5_acc": 1.0,
                        "top1_err": 1 - clean,
                        "top5_err": 0.0,
                    },
                    "attacks": {
                        "fgsm": {"settings": {"attack": "fgsm", "eps_unit": "pixel", "clamp": True}, "rows": rows}
                    },
                },
            }
        },
    }


def make_job(folder: Path, overrides: list[str], results: dict | None) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if results is not None:
        (folder / "results.json").write_text(json.dumps({**results, "overrides": overrides}))
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``folder`` with its bytes, mode and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    } | {".": (b"", folder.stat().st_mode, folder.stat().st_mtime_ns)}


def _old_job(folder: Path) -> None:
    """A folder as a finished earlier job leaves it (tiny stand-ins for its files)."""
    (folder / "checkpoints" / "undefended").mkdir(parents=True)
    (folder / "checkpoints" / "undefended" / "last.ckpt").write_bytes(b"old")
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("- old=1\n")
    listed = {"comparison_md": str(folder / "comparison.md"), "elsewhere": str(folder.parent / "keep.md")}
    (folder / "results.json").write_text(json.dumps({"status": "completed", "old": True, "files": listed}))
    (folder / "comparison.md").write_text("old")  # a report's file, known from the list
    for name in ("results.md", "results.csv", "accuracy_vs_eps.png", "undefended.pt", "cli.log"):
        (folder / name).write_text("old")
    (folder / "notes.txt").write_text("the user's own file")


def _env(cwd: Path, data_dir: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "ADVLAB_ROOT": str(cwd), "HYDRA_FULL_ERROR": "0", **(extra or {})}
    if data_dir is not None:
        env["ADVLAB_DATA_DIR"] = str(data_dir)
    return env


def advlab(
    *args: str, cwd: Path, data_dir: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "advlab", *args]
    return subprocess.run(
        command, check=False, cwd=cwd, env=_env(cwd, data_dir, env), capture_output=True, text=True, timeout=600
    )
