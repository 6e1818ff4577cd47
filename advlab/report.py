"""``advlab-report``: one table and a few plots for a run, a sweep, or several sweeps side by side.

    advlab-report outputs/multirun/advlab/2026-01-31_12-00-00        # a sweep (or one run)
    advlab-report SWEEP_A SWEEP_B --out outputs/compare              # sweeps side by side
    python -m advlab.report …                                        # the same

Every job folder (one holding ``results.json`` or ``.hydra/``) becomes rows of ``summary.csv``:
the job, its status, its command-line overrides as columns, then the rows of its results
(:func:`advlab.tables.result_rows`: whatever columns they carry — eps rows, CW rows, patch
rows). A job that failed, or left no ``results.json``, is one row with its status, overrides
and error; it never hides the others. ``summary.md`` shows the columns that tell the rows apart,
and the plots show accuracy and error against eps (and patch success against patch size) with
one line per model, defense, attack and swept setting. The Hydra callback
:class:`SweepReport` writes this report at the end of every ``advlab -m`` sweep.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.plots import plot_vs
from advlab.tables import ROW_KEYS, format_table, is_percent, result_rows

log = logging.getLogger(__name__)

# How deep below the given folder job folders are looked for (a task folder holds sweeps,
# a sweep holds jobs).
MAX_DEPTH = 3
# Columns that put a row on an x axis, and which metrics are plotted against each.
X_KEYS = ("eps", "patch_size")
PLOTS = {
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


@dataclass
class Job:
    folder: Path
    label: str
    sweep: str | None
    status: str  # completed | failed | missing | unreadable
    overrides: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Report:
    jobs: list[Job]
    rows: list[dict[str, Any]]
    text: str
    files: dict[str, Path]


# --- finding and reading jobs -----------------------------------------------------------------


def _is_job(folder: Path) -> bool:
    return (folder / "results.json").is_file() or (folder / ".hydra").is_dir()


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def find_job_folders(folder: Path) -> list[Path]:
    """``folder`` itself when it is a job, else the job folders below it (sweeps' numbered job
    folders in numeric order), not looking inside a job."""
    if _is_job(folder):
        return [folder]
    found: list[Path] = []
    level = [folder]
    for _ in range(MAX_DEPTH):
        children = [c for parent in level for c in sorted(parent.iterdir()) if c.is_dir() and not c.name.startswith(".")]
        found.extend(c for c in children if _is_job(c))
        level = [c for c in children if not _is_job(c)]
    return sorted(found, key=_natural_key)


def read_overrides(folder: Path, results: Mapping[str, Any] | None) -> list[str]:
    """The job's command-line overrides: ``.hydra/overrides.yaml``, else those in its results."""
    path = folder / ".hydra" / "overrides.yaml"
    if path.is_file():
        from omegaconf import OmegaConf

        try:
            return [str(o) for o in OmegaConf.load(path)]
        except Exception:  # a damaged file: fall back to results.json
            pass
    return [str(o) for o in (results or {}).get("overrides") or []]


def read_job(folder: Path, label: str, sweep: str | None = None) -> Job:
    path = folder / "results.json"
    if not path.is_file():
        return Job(folder, label, sweep, "missing", read_overrides(folder, None), error="no results.json (still running, killed, or crashed before writing it)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(results, dict) or "status" not in results:
            raise ValueError("not an advlab results.json")
    except (OSError, ValueError) as error:
        return Job(folder, label, sweep, "unreadable", read_overrides(folder, None), error=f"results.json: {error}")
    status = str(results.get("status"))
    return Job(folder, label, sweep, status, read_overrides(folder, results), results, results.get("error"))


def _labels(folders: Sequence[Path]) -> list[str]:
    """The shortest path endings that tell the folders apart (``undefended/2026-…``)."""
    parts = [f.resolve().parts for f in folders]
    for n in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(f) for f in folders]


def collect(folders: Sequence[Path]) -> list[Job]:
    """Every job under the folders; several folders are compared, each labelled as a sweep."""
    jobs: list[Job] = []
    labels = _labels(folders) if len(folders) > 1 else [None]
    for folder, sweep in zip(folders, labels):
        if not folder.exists():
            raise AdvlabError(f"{folder} does not exist: give a run folder or a multirun folder (outputs/multirun/<task>/<time>)")
        if not folder.is_dir():
            raise AdvlabError(f"{folder} is not a folder: give a run folder or a multirun folder (outputs/multirun/<task>/<time>)")
        found = find_job_folders(folder)
        if not found:
            what = "is empty" if not any(folder.iterdir()) else "holds no advlab runs (no results.json or .hydra/ in it or its subfolders)"
            raise AdvlabError(f"{folder} {what}: give a run folder or a multirun folder (outputs/multirun/<task>/<time>)")
        for job in found:
            label = job.relative_to(folder).as_posix() if job != folder else folder.name
            jobs.append(read_job(job, label, sweep))
    return jobs


# --- the summary table --------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, str]:
    """``+trainer.max_epochs=2`` -> ``("trainer.max_epochs", "2")``; a deletion ``~key`` -> ``(key, "~")``."""
    key, _, value = text.partition("=")
    if key.startswith("~"):
        return key.lstrip("~"), "~"
    return key.lstrip("+"), value


def _reserved(jobs: Sequence[Job]) -> set[str]:
    """Column names the rows use themselves: an override with such a key (``model=resnet18``,
    ``attack=[fgsm,pgd]``) becomes the column ``model (override)``."""
    names = {"sweep", "job", "status", "error", "overrides"}
    for job in jobs:
        if job.status == "completed" and job.results:
            names.update(key for row in result_rows(job.results) for key in row)
    return names


def job_overrides(job: Job, reserved: set[str]) -> list[tuple[str, str, str]]:
    """``(column, value, override text)`` for each override of the job."""
    columns = []
    for text in job.overrides:
        key, value = parse_override(text)
        columns.append((f"{key} (override)" if key in reserved else key, value, text))
    return columns


def _override_columns(jobs: Sequence[Job]) -> tuple[list[str], list[str]]:
    """(every override column in first-seen order, the columns whose value differs between jobs)."""
    reserved = _reserved(jobs)
    per_job = [{column: value for column, value, _ in job_overrides(job, reserved)} for job in jobs]
    columns = list(dict.fromkeys(column for mine in per_job for column in mine))
    return columns, [c for c in columns if len({mine.get(c) for mine in per_job}) > 1]


def summary_rows(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """One row per result row of every completed job, one row per other job; every row has
    every column (None where it has no value) in a stable order."""
    keys, _ = _override_columns(jobs)
    reserved = _reserved(jobs)
    raw = []
    for job in jobs:
        base: dict[str, Any] = {"sweep": job.sweep, "job": job.label, "status": job.status}
        base.update({key: None for key in keys})
        base.update({column: value for column, value, _ in job_overrides(job, reserved)})
        rows = result_rows(job.results) if job.status == "completed" and job.results else []
        tail = {"error": job.error, "overrides": " ".join(job.overrides)}
        raw.extend([{**base, **row, **tail} for row in rows] or [{**base, **tail}])
    present = list(dict.fromkeys(k for row in raw for k in row))
    head = ["sweep", "job", "status", *keys]
    ordered = [*head, *[k for k in ROW_KEYS if k in present], *[k for k in present if k not in head and k not in ROW_KEYS and k not in ("error", "overrides")], "error", "overrides"]
    if all(job.sweep is None for job in jobs):
        ordered.remove("sweep")
    return [{k: row.get(k) for k in ordered} for row in raw]


def _setting_columns(jobs: Sequence[Job]) -> set[str]:
    """Columns that come from attack settings (clamp, loss, steps…) rather than measurements."""
    return {
        key
        for job in jobs
        for entry in ((job.results or {}).get("models") or {}).values()
        for block in (((entry.get("evaluation") or {}).get("attacks")) or {}).values()
        for key in (block.get("settings") or {})
    }


def markdown_columns(rows: Sequence[Mapping[str, Any]], jobs: Sequence[Job]) -> list[str]:
    """The columns that tell rows apart: job, status when not all completed, the overrides,
    settings and descriptions that differ between rows, and every measurement (a constant count
    or sanity check only in summary.csv)."""
    if not rows:
        return []
    keys, varying = _override_columns(jobs)
    settings = _setting_columns(jobs)
    done = [r for r in rows if r.get("status") == "completed"] or list(rows)

    def useful(column: str) -> bool:
        if column in ("sweep", "job"):
            return True
        if column in CSV_ONLY:
            return False
        if column == "status":
            return any(r["status"] != "completed" for r in rows)
        if column in keys:
            return column in varying
        values = [r.get(column) for r in done if r.get(column) is not None]
        distinct = len({json.dumps(v, sort_keys=True, default=str) for v in values})
        if column in KEEP:
            return bool(values)
        if column in settings or column in DESCRIPTIONS or column in DIAGNOSTICS:
            return distinct > 1
        return bool(values)

    return [c for c in rows[0] if useful(c)]


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    headers = {c: f"{c.replace('top1', 'top-1').replace('top5', 'top-5').replace('_', ' ')} %" for c in columns if is_percent(c)}
    return format_table(rows, columns, headers, percent=headers)


def problems(jobs: Sequence[Job]) -> list[str]:
    """One line per job that did not complete: its status, error and the overrides that set it
    apart from the other jobs (all of them in summary.csv)."""
    _, varying = _override_columns(jobs)
    reserved = _reserved(jobs)
    lines = []
    for job in jobs:
        if job.status != "completed":
            own = [text for column, _, text in job_overrides(job, reserved) if column in varying] or job.overrides
            overrides = " ".join(own) or "(no overrides)"
            lines.append(f"- {job.label}: {job.status}: {job.error or 'no error recorded'} [{overrides}]")
    return lines


# --- plots ----------------------------------------------------------------------------------


def write_plots(rows: Sequence[Mapping[str, Any]], jobs: Sequence[Job], out: Path) -> dict[str, Path]:
    """Per x axis present: the metrics against it, one line per (sweep, model, defense, attack,
    target, swept setting other than the x axis itself)."""
    _, varying = _override_columns(jobs)
    done = [r for r in rows if r.get("status") == "completed"]
    files: dict[str, Path] = {}
    for x, figures in PLOTS.items():
        if not any(r.get(x) is not None and r.get("attack") not in (None, "none") for r in done):
            continue
        swept = [k for k in varying if x not in k.rsplit(".", 1)[-1] and not (x == "patch_size" and "size" in k)]
        parts = [p for p in ("sweep", "model", "defense", "attack", "target") if len({str(r.get(p)) for r in done}) > 1 or p in ("model", "attack")]
        for name, metrics in figures.items():
            path = plot_vs(done, x, metrics, [*parts, *swept], out / f"summary_{name}_vs_{x}.png", f"{name.replace('_', ' ')} vs {x.replace('_', ' ')}")
            if path is not None:
                files[f"{name}_vs_{x}"] = path
    return files


# --- the report ---------------------------------------------------------------------------------


def write_report(folders: Sequence[str | Path], out: str | Path | None = None) -> Report:
    """Read every job under ``folders`` and write summary.csv, summary.md and the plots into
    ``out`` (default: the folder itself; required when comparing several)."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise AdvlabError("no folder given: advlab-report <run or multirun folder> [more folders to compare] [--out DIR]")
    jobs = collect(folders)
    if out is None:
        if len(folders) > 1:
            raise AdvlabError("comparing several folders: say where the summary goes with --out DIR")
        out = folders[0]
    out = Path(out)
    rows = summary_rows(jobs)
    columns = markdown_columns(rows, jobs)
    table = markdown_table(rows, columns)
    completed = sum(job.status == "completed" for job in jobs)
    heading = f"{completed} of {len(jobs)} jobs completed" + (f" in {len(folders)} sweeps" if len(folders) > 1 else "")
    text = "\n".join([heading, "", table, *([""] + ["Jobs without results:"] + problems(jobs) if completed < len(jobs) else [])])
    files = {
        "summary_csv": write_csv(out / "summary.csv", rows),
        "summary_md": write_text(out / "summary.md", f"# Summary of {', '.join(str(f) for f in folders)}\n\n{text}\n"),
    }
    files.update(write_plots(rows, jobs, out))
    return Report(jobs, rows, text, files)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="advlab-report",
        description="Summarize advlab runs: summary.csv, summary.md and plots for a run or sweep folder, "
        "or several sweeps side by side.",
    )
    parser.add_argument("folders", nargs="+", help="a run folder, a multirun folder (outputs/multirun/<task>/<time>), or several to compare")
    parser.add_argument("--out", help="where to write the summary (default: the folder itself; required with several folders)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.folders, args.out)
    except AdvlabError as error:
        print(f"advlab-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(report.text)
    print()
    for name, path in report.files.items():
        print(f"{name}: {path}")


class SweepReport(Callback):
    """Hydra callback: the report of a sweep, written into its folder when the sweep ends.
    A problem here is logged, never raised: the jobs' own results are already safe."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            folder = Path(str(config.hydra.sweep.dir))
            report = write_report([folder])
            print(f"\nSweep summary ({folder}):\n{report.text}\n", flush=True)
        except AdvlabError as error:
            log.warning("no sweep summary: %s", error)
        except Exception:
            log.exception("the sweep summary failed (the jobs' results are unaffected)")


if __name__ == "__main__":
    main()
