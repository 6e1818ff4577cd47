"""The sweep summary: every job under one or several folders as rows of ``summary.csv``, the
rows that tell jobs apart in ``summary.md``, and accuracy/error (and patch success) plots.

Every job folder becomes rows: the job, its status, its command-line overrides as columns, then
the rows of its results (:func:`advlab.reports.jobs.result_rows`: whatever columns they carry —
eps rows, CW rows, patch rows). A job that did not complete is one row with its status,
overrides and error; it never hides the others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.reports.jobs import ROW_KEYS, Job, collect, parse_override, setting_columns
from advlab.reports.plots import plot_vs
from advlab.reports.tables import format_table

# The x axes rows are plotted against, and the metrics plotted against each.
PLOTS: dict[str, dict[str, tuple[str, ...]]] = {
    "eps": {"accuracy": ("top1_acc", "top5_acc"), "error": ("top1_err", "top5_err")},
    "patch_size": {"patch_success": ("top1_rate", "top5_rate", "target_rate")},
}
# Columns summary.md always keeps, even when every row has the same value.
KEEP = ("model", "attack", "eps", "patch_size", "target", "top1_acc", "top5_acc", "top1_err", "top5_err")
# Raw counts and sanity checks: in summary.csv, not in summary.md.
CSV_ONLY = ("correct", "max_linf", "overrides", "error")
# Shown in summary.md only when they differ between rows.
DESCRIPTIONS = ("architecture", "defense", "eps_unit")
DIAGNOSTICS = ("n", "zero_grad_share")
# Series of the plots: these row columns, when they differ (model and attack always).
SERIES = ("sweep", "model", "defense", "attack", "target")


@dataclass
class Report:
    jobs: list[Job]
    rows: list[dict[str, Any]]
    text: str
    files: dict[str, Path]


def _reserved(jobs: Sequence[Job]) -> set[str]:
    """Column names the rows use themselves: an override with such a key (``model=resnet18``,
    ``attack=[fgsm,pgd]``) becomes the column ``model (override)``."""
    names = {"sweep", "job", "status", "error", "overrides"}
    names.update(key for job in jobs for row in job.rows for key in row)
    return names


def job_overrides(job: Job, reserved: set[str]) -> list[tuple[str, str, str]]:
    """``(column, value, override text)`` for each override of the job."""
    columns = []
    for text in job.overrides:
        key, value = parse_override(text)
        columns.append((f"{key} (override)" if key in reserved else key, value, text))
    return columns


def override_columns(jobs: Sequence[Job]) -> tuple[list[str], list[str]]:
    """(every override column in first-seen order, the columns whose value differs between jobs)."""
    reserved = _reserved(jobs)
    per_job = [{column: value for column, value, _ in job_overrides(job, reserved)} for job in jobs]
    columns = list(dict.fromkeys(column for mine in per_job for column in mine))
    return columns, [c for c in columns if len({mine.get(c) for mine in per_job}) > 1]


def order_columns(head: Sequence[str], present: Sequence[str], tail: Sequence[str] = ()) -> list[str]:
    """``head``, then the usual result columns (:data:`ROW_KEYS`), then the others, then ``tail``."""
    known = [k for k in ROW_KEYS if k in present]
    rest = [k for k in present if k not in head and k not in ROW_KEYS and k not in tail]
    return [*head, *known, *rest, *tail]


def summary_rows(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """One row per result row of every completed job, one row per other job; every row has
    every column (None where it has no value) in a stable order."""
    keys, _ = override_columns(jobs)
    reserved = _reserved(jobs)
    raw = []
    for job in jobs:
        base: dict[str, Any] = {"sweep": job.sweep, "job": job.label, "status": job.status}
        base.update({key: None for key in keys})
        base.update({column: value for column, value, _ in job_overrides(job, reserved)})
        tail = {"error": job.error, "overrides": " ".join(job.overrides)}
        raw.extend([{**base, **row, **tail} for row in job.rows] or [{**base, **tail}])
    present = list(dict.fromkeys(k for row in raw for k in row))
    ordered = order_columns(["sweep", "job", "status", *keys], present, ["error", "overrides"])
    if all(job.sweep is None for job in jobs):
        ordered.remove("sweep")
    return [{k: row.get(k) for k in ordered} for row in raw]


def useful_columns(
    rows: Sequence[Mapping[str, Any]], overrides: Sequence[str], varying: Sequence[str], settings: set[str]
) -> list[str]:
    """The columns that tell rows apart: job, status when not all completed, the overrides,
    settings and descriptions that differ between rows, and every measurement (a constant count
    or sanity check only in the CSV)."""
    if not rows:
        return []
    done = [r for r in rows if r.get("status", "completed") == "completed"] or list(rows)

    def useful(column: str) -> bool:
        if column in ("sweep", "job", "group"):
            return True
        if column in CSV_ONLY:
            return False
        if column == "status":
            return any(r["status"] != "completed" for r in rows)
        if column in overrides:
            return column in varying
        values = [r.get(column) for r in done if r.get(column) is not None]
        distinct = len({json.dumps(v, sort_keys=True, default=str) for v in values})
        if column in KEEP:
            return bool(values)
        if column in settings or column in DESCRIPTIONS or column in DIAGNOSTICS:
            return distinct > 1
        return bool(values)

    return [c for c in rows[0] if useful(c)]


def problems(jobs: Sequence[Job]) -> list[str]:
    """One line per job that did not complete: its status, error and the overrides that set it
    apart from the other jobs (all of them in summary.csv)."""
    _, varying = override_columns(jobs)
    reserved = _reserved(jobs)
    lines = []
    for job in jobs:
        if job.status != "completed":
            own = [text for column, _, text in job_overrides(job, reserved) if column in varying] or job.overrides
            overrides = " ".join(own) or "(no overrides)"
            lines.append(f"- {job.label}: {job.status}: {job.why} [{overrides}]")
    return lines


def write_plots(
    rows: Sequence[Mapping[str, Any]], varying: Sequence[str], out: Path, stem: str, note: str = ""
) -> dict[str, Path]:
    """Per x axis present: the metrics against it, one line per (sweep, model, defense, attack,
    target, swept setting other than the x axis itself)."""
    done = [r for r in rows if r.get("status", "completed") == "completed"]
    files: dict[str, Path] = {}
    for x, figures in PLOTS.items():
        if not any(r.get(x) is not None and r.get("attack") not in (None, "none") for r in done):
            continue
        swept = [k for k in varying if x not in k.rsplit(".", 1)[-1] and not (x == "patch_size" and "size" in k)]
        distinct = [p for p in SERIES if len({str(r.get(p)) for r in done}) > 1 or p in ("model", "attack")]
        for name, metrics in figures.items():
            title = f"{name.replace('_', ' ')} vs {x.replace('_', ' ')}{note}"
            path = plot_vs(done, x, metrics, [*distinct, *swept], out / f"{stem}_{name}_vs_{x}.png", title)
            if path is not None:
                files[f"{name}_vs_{x}"] = path
    return files


def output_folder(folders: Sequence[Path], out: str | Path | None) -> Path:
    """``out``, else the one folder given (several folders need ``--out``)."""
    if out is not None:
        return Path(out)
    if len(folders) > 1:
        raise AdvlabError("comparing several folders: say where the report goes with --out DIR")
    return folders[0]


def write_summary(folders: Sequence[str | Path], out: str | Path | None = None) -> Report:
    """Read every job under ``folders`` and write summary.csv, summary.md and the plots into
    ``out`` (default: the folder itself; required when comparing several)."""
    paths = [Path(f) for f in folders]
    jobs = collect(paths)
    target = output_folder(paths, out)
    rows = summary_rows(jobs)
    keys, varying = override_columns(jobs)
    settings = {key for job in jobs for key in setting_columns(job.results)}
    table = format_table(rows, useful_columns(rows, keys, varying, settings))
    completed = sum(job.status == "completed" for job in jobs)
    heading = f"{completed} of {len(jobs)} jobs completed" + (f" in {len(paths)} sweeps" if len(paths) > 1 else "")
    missing = ["", "Jobs without results:", *problems(jobs)] if completed < len(jobs) else []
    text = "\n".join([heading, "", table, *missing])
    files = {
        "summary_csv": write_csv(target / "summary.csv", rows),
        "summary_md": write_text(target / "summary.md", f"# Summary of {', '.join(map(str, paths))}\n\n{text}\n"),
    }
    files.update(write_plots(rows, varying, target, "summary"))
    return Report(jobs, rows, text, files)
