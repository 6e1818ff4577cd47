"""What a job's results become in a logger (see :mod:`advlab.tracking`): series over an x axis
(eps, or patch size), flat summary values, and how each logger kind receives them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Row columns that place a result on an x axis: the first one a row has is its axis.
X_KEYS = ("eps", "patch_size")
# Row columns that split one attack's rows into separate series (a patch per target class).
SERIES_KEYS = ("target",)
# Counts and sanity checks: logged per eps, left out of the summary values that compare jobs.
SUMMARY_SKIP = ("n", "correct", "max_linf", "zero_grad_share")
# Figures (results["files"] entries) that are logged as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def result_series(results: Mapping[str, Any]) -> dict[str, tuple[str | None, list[tuple[Any, dict[str, float]]]]]:
    """``{key prefix: (x column, [(x, {metric: value}), …])}``: the clean numbers of each model
    (``undefended/clean``, no x) and each attack's rows over their x axis (``undefended/fgsm``,
    one series per target class for rows that carry one)."""
    series: dict[str, tuple[str | None, list[tuple[Any, dict[str, float]]]]] = {}
    for label, entry in (results.get("models") or {}).items():
        evaluation = entry.get("evaluation") or {}
        clean = {k: v for k, v in (evaluation.get("clean") or {}).items() if _is_number(v)}
        if clean:
            series[f"{label}/clean"] = (None, [(None, clean)])
        for attack, block in (evaluation.get("attacks") or {}).items():
            for row in block.get("rows") or []:
                x_key = next((k for k in X_KEYS if _is_number(row.get(k))), None)
                split = [str(row[k]) for k in SERIES_KEYS if row.get(k) is not None]
                prefix = "/".join([str(label), str(attack), *split])
                metrics = {k: v for k, v in row.items() if k != x_key and k not in SERIES_KEYS and _is_number(v)}
                series.setdefault(prefix, (x_key, []))[1].append((row.get(x_key) if x_key else None, metrics))
    return series


def summary_metrics(series: Mapping[str, tuple[str | None, list[tuple[Any, dict[str, float]]]]]) -> dict[str, float]:
    """One flat value per (series, x, metric), named ``undefended/fgsm/top1_acc@eps=0.1``: what
    the wandb runs table and TensorBoard's HParams view compare across the jobs of a sweep."""
    summary = {}
    for prefix, (x_key, points) in series.items():
        for index, (x, metrics) in enumerate(points):
            at = f"@{x_key}={x:g}" if x_key else (f"@{index}" if len(points) > 1 else "")
            summary.update(
                {f"{prefix}/{name}{at}": value for name, value in metrics.items() if name not in SUMMARY_SKIP}
            )
    return summary


def log_series(logger: Any, series: Mapping[str, Any]) -> None:
    """Any Lightning logger: each point of a series with an x axis as one step, its x value
    logged beside it (values without an x axis, like the clean accuracy, are summary values)."""
    for prefix, (x_key, points) in series.items():
        if not x_key:
            continue
        for step, (x, metrics) in enumerate(points):
            values = {f"{prefix}/{name}": value for name, value in metrics.items()}
            logger.log_metrics({**values, f"{prefix}/{x_key}": x}, step=step)


def log_to_tensorboard(
    logger: Any, params: dict[str, Any], summary: dict[str, float], figures: Mapping[str, str], table_md: str | None
) -> None:
    from matplotlib.image import imread

    writer = logger.experiment
    if table_md:
        writer.add_text("results", table_md, 0)
    for name, path in figures.items():
        image = imread(path)
        writer.add_image(
            f"figures/{name}",
            image[..., :3] if image.ndim == 3 else image,
            0,
            dataformats="HWC" if image.ndim == 3 else "HW",
        )
    # the HParams dashboard: each job's config beside its summary numbers
    logger.log_hyperparams(params, metrics=summary)


def log_to_wandb(
    run: Any,
    series: Mapping[str, Any],
    summary: dict[str, float],
    rows: list[dict[str, Any]],
    figures: Mapping[str, str],
) -> None:
    import wandb

    for prefix, (x_key, points) in series.items():
        if not x_key:
            continue  # clean numbers: summary only
        axis = f"{prefix}/{x_key}"
        run.define_metric(axis)
        for name in {n for _, metrics in points for n in metrics}:
            run.define_metric(f"{prefix}/{name}", step_metric=axis)
        for x, metrics in points:
            run.log({axis: x, **{f"{prefix}/{name}": value for name, value in metrics.items()}})
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = wandb.Table(
        columns=[*columns], data=[[_plain(row.get(c)) for c in columns] for row in rows], allow_mixed_types=True
    )
    run.log(
        {
            "results/table": table,
            **{f"figures/{name}": wandb.Image(str(path), caption=name) for name, path in figures.items()},
        }
    )
    run.summary.update(summary)


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def read_text(path: str | None) -> str | None:
    return Path(path).read_text(encoding="utf-8") if path and Path(path).is_file() else None
