"""``run(cfg)``: one advlab job from a composed config, callable from tests and notebooks.

Order of work: claim ``paths.output_dir`` (:mod:`advlab.job_folder`: ``results.json`` says
``running``), check the attacks and the settings (:mod:`advlab.pipeline.preflight`: bad input
fails before any training), build the data, prepare the models the defense asks for, evaluate
them clean and under attack, print the table, then write ``results.csv``, ``results.md``, the
figures and last ``results.json`` with ``status: completed``. A job that stops early records
``failed``, ``terminated`` (SIGTERM) or ``interrupted`` there instead.
Experiment tracking wraps everything after the claim (:func:`advlab.tracking.track_job`): one
wandb run per job, and the results logged to every configured logger once they are written.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from advlab.config import instantiate
from advlab.diagnostics import add_warnings, format_warnings, thresholds
from advlab.io import write_csv, write_json, write_text
from advlab.job_folder import claim, finish
from advlab.pipeline.defended import prepare_models
from advlab.pipeline.evaluate import build_attacks, evaluate_models
from advlab.pipeline.per_image import PerImage, predict_per_image
from advlab.pipeline.preflight import check_seed, check_wandb, preflight
from advlab.reports.jobs import result_rows
from advlab.reports.plots import plot_accuracy_vs_eps, plot_examples
from advlab.reports.tables import accuracy_table
from advlab.tracking import track_job

log = logging.getLogger(__name__)


def job_overrides() -> list[str]:
    """The command-line overrides of this job (empty outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def machine(device: torch.device | str | None = None) -> str:
    """The device a job (or a benchmark) runs on, in words: the GPU, or the CPU and its threads."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {platform.machine()} × {torch.get_num_threads()} threads, torch {torch.__version__}"


def code_version() -> str | None:
    """The git commit the job ran (``+dirty`` with uncommitted changes to the code or configs),
    when run from a checkout. Read when the job starts: that is the code Python loaded."""
    from advlab.config import PACKAGE_DIR

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "advlab") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run(cfg: DictConfig) -> dict[str, Any]:
    """One job from a composed config; returns what ``results.json`` holds."""
    about = {"task_name": cfg.get("task_name"), "overrides": job_overrides()}
    out_dir = claim(cfg.paths.output_dir, cfg.get("overwrite", False), about)
    try:
        check_wandb(cfg)  # before the tracked part opens the wandb run (online without a key would hang)
        results = _tracked_run(cfg, out_dir)
    except BaseException as error:  # SIGTERM and Ctrl-C too: the folder must say how the job ended
        finish(out_dir, error, about)
        raise
    finish(out_dir)
    return results


@track_job
def _tracked_run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    started = time.time()
    version = code_version()
    L.seed_everything(check_seed(cfg.get("seed", 0)), workers=True, verbose=False)
    attacks = build_attacks(cfg)
    datamodule = instantiate(cfg.data)
    preflight(cfg, attacks, datamodule)
    models, training = prepare_models(cfg, datamodule)
    evaluation, examples, is_global_zero = evaluate_models(cfg, models, attacks, datamodule)

    results: dict[str, Any] = {
        "status": "completed",
        "task_name": cfg.get("task_name"),
        "overrides": job_overrides(),
        "machine": machine(),
        "code_version": version,
        "models": {
            label: {
                "architecture": (training.get(label) or {}).get("architecture", cfg.model.get("name")),
                "defense": (training.get(label) or {}).get("defense", cfg.defense.get("name")),
                "training": training.get(label),
                "evaluation": evaluation[label],
            }
            for label in models
        },
    }
    add_warnings(results, thresholds((cfg.get("evaluation") or {}).get("diagnostics")))  # gradient-masking checks (advlab/diagnostics.py)
    if not is_global_zero:  # under DDP only rank 0 writes
        return results
    architectures = {label: entry["architecture"] for label, entry in results["models"].items()}
    per_image = predict_per_image(cfg, models, datamodule, architectures)  # evaluation.per_image, if set
    for label, found in per_image.items():
        results["models"][label]["per_image"] = found.rows
    # The numbers first: a figure that fails to draw must not hide them.
    print(f"\n{accuracy_table(result_rows(results))}\n")
    if results["warnings"]:
        print(f"{format_warnings(results['warnings'])}\n")
    results["files"] = write_outputs(out_dir, results, examples, getattr(datamodule, "class_names", None))
    results["files"].update(write_reports(cfg, results, per_image))
    results["elapsed_s"] = round(time.time() - started, 1)
    write_json(out_dir / "results.json", results)  # last: "completed" means every file above is there
    for name, path in results["files"].items():
        print(f"{name}: {path}")
    return results


def write_outputs(out_dir: Path, results: dict[str, Any], examples: dict[str, Any], class_names: list[str] | None) -> dict[str, str]:
    """Tables and figures beside ``results.json``; returns ``{what: path}``."""
    rows = result_rows(results)
    files = {
        "results_csv": write_csv(out_dir / "results.csv", rows),
        "results_md": write_text(out_dir / "results.md", accuracy_table(rows) + "\n"),
    }
    if any(r["attack"] != "none" and r.get("eps") is not None for r in rows):
        files["accuracy_plot"] = plot_accuracy_vs_eps(rows, out_dir / "accuracy_vs_eps.png")
    for label, example in examples.items():
        if example:
            names = class_names or [str(i) for i in range(int(example["labels"].max()) + 1)]
            files[f"examples_{label}"] = plot_examples(example, names, out_dir / f"examples_{label}.png")
    for label, entry in results["models"].items():
        for attack, block in entry["evaluation"].get("attacks", {}).items():
            # files an attack's own evaluator wrote (a patch's table and figure)
            files.update({f"{attack}_{what}_{label}": path for what, path in (block.get("files") or {}).items()})
        training = entry.get("training") or {}
        if training.get("loss_plot"):
            files[f"loss_plot_{label}"] = training["loss_plot"]
    files["results_json"] = out_dir / "results.json"
    return {k: str(v) for k, v in files.items()}


def write_reports(cfg: DictConfig, results: dict[str, Any], per_image: dict[str, PerImage]) -> dict[str, str]:
    """Write the extras chosen with ``reports=…`` (advlab/conf/reports/): each entry is a
    ``_partial_`` target of :mod:`advlab.reports.extras`, called as ``report(results=…,
    out_dir=…, per_image=…)``, that formats what the evaluation measured and returns ``{what: path}``."""
    files: dict[str, str] = {}
    images = {label: found.images for label, found in per_image.items()}
    for node in (cfg.get("reports") or {}).values():
        if node is not None:
            written = instantiate(node)(results=results, out_dir=Path(cfg.paths.output_dir), per_image=images)
            files.update({k: str(v) for k, v in written.items()})
    return files
