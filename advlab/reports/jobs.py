"""The one reader of job folders: a run's ``results.json``, or every job of a sweep, as
:class:`Job` records, and a job's results flattened into rows (:func:`result_rows`).

A job folder holds ``results.json`` or ``.hydra/`` (Hydra writes it when the job starts). The
status is the one ``results.json`` records (``completed``, ``failed``, ``terminated``, …);
``missing`` when the job left no ``results.json`` (still running, killed, or crashed before
writing it), ``unreadable`` when the file is torn or not advlab's. No job is ever dropped: the
reports list every job that did not complete beside the others' rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from advlab.errors import AdvlabError

# How deep below the given folder job folders are looked for (a task folder holds sweeps,
# a sweep holds jobs).
MAX_DEPTH = 3
# Columns every table shows first, in this order, when present.
ROW_KEYS = (
    "model",
    "architecture",
    "defense",
    "attack",
    "eps",
    "eps_unit",
    "n",
    "correct",
    "top1_acc",
    "top5_acc",
    "top1_err",
    "top5_err",
)
USAGE = "give a run folder or a multirun folder (outputs/multirun/<task>/<time>)"


def result_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten a run's ``results.json`` into rows: a ``clean`` row (eps 0, attack ``none``) per
    model, then one row per attack and eps (or per patch)."""
    rows = []
    for label, entry in results.get("models", {}).items():
        base = {"model": label, "architecture": entry.get("architecture"), "defense": entry.get("defense")}
        evaluation = entry.get("evaluation", {})
        if "clean" in evaluation:
            rows.append({**base, "attack": "none", "eps": 0.0, **evaluation["clean"]})
        for attack, block in evaluation.get("attacks", {}).items():
            settings = {k: v for k, v in block.get("settings", {}).items() if k != "attack"}
            for row in block.get("rows", []):
                rows.append({**base, "attack": attack, "eps": row.get("eps"), **settings, **row})
    return rows


def setting_columns(results: Mapping[str, Any] | None) -> set[str]:
    """Row columns that come from attack settings (clamp, loss, steps…), not measurements."""
    return {
        key
        for entry in ((results or {}).get("models") or {}).values()
        for block in (((entry.get("evaluation") or {}).get("attacks")) or {}).values()
        for key in (block.get("settings") or {})
    }


@dataclass
class Job:
    folder: Path
    label: str
    sweep: str | None
    status: str  # completed | failed | terminated | … | missing | unreadable
    overrides: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None
    error: str | None = None

    @property
    def why(self) -> str:
        """Why the job has no results: its error, or for a job that says it is running, since when."""
        if self.error:
            return self.error
        if self.status == "running":
            record = self.results or {}
            started = record.get("started")
            where = ", ".join(f"{k} {record[k]}" for k in ("host", "pid") if record.get(k))
            return f"still running, or killed without a trace (started {started or '?'}{', ' + where if where else ''})"
        return "no error recorded"

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The job's result rows; none unless it completed."""
        return result_rows(self.results) if self.status == "completed" and self.results else []


def parse_override(text: str) -> tuple[str, str]:
    """``+trainer.max_epochs=2`` -> ``("trainer.max_epochs", "2")``; a deletion ``~key`` -> ``(key, "~")``."""
    key, _, value = text.partition("=")
    if key.startswith("~"):
        return key.lstrip("~"), "~"
    return key.lstrip("+"), value


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
        children = [c for p in level for c in sorted(p.iterdir()) if c.is_dir() and not c.name.startswith(".")]
        found.extend(c for c in children if _is_job(c))
        level = [c for c in children if not _is_job(c)]
    return sorted(found, key=_natural_key)


def _load_list(path: Path) -> list[str] | None:
    try:
        return [str(o) for o in OmegaConf.load(path)]
    except Exception:  # a damaged file: the caller falls back
        return None


def read_overrides(folder: Path, results: Mapping[str, Any] | None) -> list[str]:
    """The job's command-line overrides: ``.hydra/overrides.yaml``, else those in its results."""
    path = folder / ".hydra" / "overrides.yaml"
    found = _load_list(path) if path.is_file() else None
    return found if found is not None else [str(o) for o in (results or {}).get("overrides") or []]


def sweep_overrides(folder: Path) -> list[str]:
    """The overrides a whole sweep was started with (``multirun.yaml``: ``seed=0,1,2``), so a
    job that never got a folder is still known; empty for a single run."""
    path = folder / "multirun.yaml"
    if not path.is_file():
        return []
    try:
        task = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task")
    except Exception:  # a damaged file: the jobs' own folders still count
        return []
    return [str(o) for o in task or []]


def read_job(folder: Path, label: str, sweep: str | None = None) -> Job:
    path = folder / "results.json"
    if not path.is_file():
        error = "no results.json (still running, killed, or crashed before writing it)"
        return Job(folder, label, sweep, "missing", read_overrides(folder, None), error=error)
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
    if not folders:
        raise AdvlabError(f"no folder given: {USAGE}")
    jobs: list[Job] = []
    labels: Sequence[str | None] = _labels(folders) if len(folders) > 1 else [None]
    for folder, sweep in zip(folders, labels):
        if not folder.exists():
            raise AdvlabError(f"{folder} does not exist: {USAGE}")
        if not folder.is_dir():
            raise AdvlabError(f"{folder} is not a folder: {USAGE}")
        found = find_job_folders(folder)
        if not found:
            what = (
                "is empty"
                if not any(folder.iterdir())
                else "holds no advlab runs (no results.json or .hydra/ in it or its subfolders)"
            )
            raise AdvlabError(f"{folder} {what}: {USAGE}")
        for job in found:
            label = job.relative_to(folder).as_posix() if job != folder else folder.name
            jobs.append(read_job(job, label, sweep))
    return jobs
