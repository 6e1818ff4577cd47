"""Seeds as an axis: jobs that differ only in ``seed`` become one group, and every numeric result
cell of the group becomes mean ± sample standard deviation (n − 1) over its seeds, with n.

    advlab -m experiment=paper_mnist_fgsm seed=0,1,2        # seeds.md/.csv/.png at the end
    advlab-report seeds SWEEP [MORE SWEEPS] [--out DIR]     # the same, pooling several sweeps

Rows are matched across seeds by what identifies them (model, defense, attack, eps, target,
patch size and the attack's settings), so this works for any experiment. The seeds a group
should have are those the sweep declared (``multirun.yaml``) or any job of its folder used; a
seed whose job failed, was terminated, or left no results is listed as missing with its status,
never silently dropped — and n says how many seeds each cell really averages.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advlab.io import write_csv, write_text
from advlab.reports.jobs import Job, collect, parse_override, setting_columns, sweep_overrides
from advlab.reports.summary import Report, order_columns, output_folder, useful_columns, write_plots
from advlab.reports.tables import cell, format_table, is_percent

SEED = "seed"
# Row columns that say which measurement a row is (with the attack's settings).
IDENTITY = (
    "model", "architecture", "defense", "attack", "eps", "eps_unit",
    "target", "target_index", "patch_size", "source", "trained_on",
)  # fmt: skip


@dataclass
class SeedGroup:
    overrides: list[str]  # the overrides its jobs share (seed left out)
    jobs: dict[str, Job] = field(default_factory=dict)  # seed -> its (last) job
    expected: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def missing(self) -> dict[str, str]:
        """seed -> why it has no numbers (its job's status and error, or no job at all)."""
        why = {s: "no job folder" for s in self.expected if s not in self.jobs}
        for seed, job in self.jobs.items():
            if job.status != "completed":
                why[seed] = f"{job.status}: {job.why}"
        return dict(sorted(why.items(), key=lambda item: _seed_order(item[0])))


def _seed_order(seed: str) -> tuple[int, float | str]:
    try:
        return (0, float(seed))
    except ValueError:
        return (1, seed)


def seed_of(overrides: Sequence[str]) -> str | None:
    """The value of the job's ``seed=`` override (``None`` when it does not set one)."""
    values = [value for key, value in map(parse_override, overrides) if key == SEED]
    return values[-1] if values else None


def declared_seeds(overrides: Sequence[str]) -> set[str]:
    """Seeds a sweep was started with: ``seed=0,1,2`` -> {0, 1, 2}; ``range(…)`` is expanded."""
    text = next((value for key, value in map(parse_override, overrides) if key == SEED), None)
    if text is None:
        return set()
    if text.startswith("range(") and text.endswith(")"):
        try:
            return {str(i) for i in range(*(int(a) for a in text[6:-1].split(",")))}
        except ValueError:
            return set()
    return {part.strip() for part in text.split(",") if part.strip()}


def group_jobs(jobs: Sequence[Job], folders: Sequence[Path]) -> list[SeedGroup]:
    """Jobs grouped by their overrides without ``seed``; each group expects the seeds declared
    by, or used in, every folder it has jobs in."""
    groups: dict[tuple[str, ...], SeedGroup] = {}
    folder_seeds: dict[Path, set[str]] = {folder: declared_seeds(sweep_overrides(folder)) for folder in folders}
    roots: dict[tuple[str, ...], set[Path]] = {}
    for job in jobs:
        root = next((f for f in folders if job.folder == f or f in job.folder.parents), folders[0])
        seed = seed_of(job.overrides) or "default"
        folder_seeds[root].add(seed)
        shared = [o for o in job.overrides if parse_override(o)[0] != SEED]
        key = tuple(sorted(shared))
        group = groups.setdefault(key, SeedGroup(shared))
        roots.setdefault(key, set()).add(root)
        if seed in group.jobs:
            group.notes.append(
                f"seed {seed}: several jobs ({group.jobs[seed].label}, {job.label}); the last one counts"
            )
        group.jobs[seed] = job
    for key, group in groups.items():
        group.expected = set().union(*(folder_seeds[root] for root in roots[key]))
    return list(groups.values())


def _identity(row: Mapping[str, Any], settings: set[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (c, json.dumps(v, sort_keys=True, default=str)) for c, v in row.items() if c in IDENTITY or c in settings
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def aggregate(group: SeedGroup) -> list[dict[str, Any]]:
    """One row per measurement of the group: identity columns, then per numeric column its mean
    (``<column>``), sample std (``<column>_std``, None with one seed) and count (``<column>_n``);
    text columns kept where every seed agrees."""
    matched: dict[tuple[tuple[str, str], ...], list[Mapping[str, Any]]] = {}
    identity: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for job in group.jobs.values():
        settings = setting_columns(job.results)
        for row in job.rows:
            key = _identity(row, settings)
            matched.setdefault(key, []).append(row)
            identity.setdefault(key, {c: row[c] for c, _ in key})
    rows = []
    for key, found in matched.items():
        out: dict[str, Any] = dict(identity[key])
        columns = list(dict.fromkeys(c for row in found for c in row if c not in out))
        for column in columns:
            values = [row[column] for row in found if row.get(column) is not None]
            if values and all(_is_number(v) for v in values):
                out[column] = statistics.fmean(values)
                out[f"{column}_std"] = statistics.stdev(values) if len(values) > 1 else None
                out[f"{column}_n"] = len(values)
            elif values and len({json.dumps(v, default=str) for v in values}) == 1 and len(values) == len(found):
                out[column] = values[0]
        rows.append(out)
    return rows


def mean_std(row: Mapping[str, Any], column: str) -> str:
    """``98.68 ± 0.02 (n=3)``: a percentage for a share, ``(n=1)`` alone when one seed has it;
    a count every seed agrees on (test images) as the plain number."""
    mean, spread, n = row.get(column), row.get(f"{column}_std"), row.get(f"{column}_n")
    if mean is None or n is None or (spread == 0 and not is_percent(column)):
        return cell(mean, is_percent(column))
    if spread is None:
        return f"{cell(float(mean), is_percent(column))} (n={n})"
    return f"{cell(float(mean), is_percent(column))} ± {cell(float(spread), is_percent(column))} (n={n})"


def seed_rows(groups: Sequence[SeedGroup]) -> tuple[list[dict[str, Any]], list[str]]:
    """The aggregated rows of every group (with the overrides that tell groups apart as columns)
    and those override columns."""
    shared = [dict(map(parse_override, g.overrides)) for g in groups]
    keys = list(dict.fromkeys(k for mine in shared for k in mine))
    varying = [k for k in keys if len({mine.get(k) for mine in shared}) > 1]
    rows: list[dict[str, Any]] = []
    for group, mine in zip(groups, shared):
        missing = group.missing()
        base: dict[str, Any] = {f"{k} (override)" if k in IDENTITY else k: mine.get(k) for k in varying}
        present = sorted((s for s in group.jobs if s not in missing), key=_seed_order)
        tail = {"seeds": ",".join(present), "missing_seeds": ",".join(missing), "overrides": " ".join(group.overrides)}
        rows.extend({**base, **row, **tail} for row in aggregate(group))
    return rows, [f"{k} (override)" if k in IDENTITY else k for k in varying]


def write_seeds(folders: Sequence[str | Path], out: str | Path | None = None) -> Report:
    """Group the jobs under ``folders`` by seed and write seeds.csv, seeds.md and the plots (with
    ± one standard deviation bands) into ``out`` (default: the one folder given)."""
    paths = [Path(f) for f in folders]
    jobs = collect(paths)
    target = output_folder(paths, out)
    groups = group_jobs(jobs, paths)
    rows, varying = seed_rows(groups)
    present = list(dict.fromkeys(k for row in rows for k in row))
    ordered = order_columns(varying, present, ["seeds", "missing_seeds", "overrides"])
    rows = [{k: row.get(k) for k in ordered} for row in rows]
    measured = [c for c in ordered if f"{c}_n" in present]
    text_rows = [{**row, **{c: mean_std(row, c) for c in measured}} for row in rows]
    settings = {key for job in jobs for key in setting_columns(job.results)}
    hidden = {f"{c}_{s}" for c in measured for s in ("std", "n")} | {"seeds", "overrides"}
    if not any(row["missing_seeds"] for row in rows):
        hidden.add("missing_seeds")
    columns = [c for c in useful_columns(text_rows, varying, varying, settings) if c not in hidden]
    table = format_table(text_rows, columns, headers={k: k for k in varying}, percent=())
    text = "\n".join([_heading(groups), "", table, *_missing_lines(groups)])
    files = {
        "seeds_csv": write_csv(target / "seeds.csv", rows),
        "seeds_md": write_text(target / "seeds.md", f"# Seeds of {', '.join(map(str, paths))}\n\n{text}\n"),
    }
    files.update(write_plots(rows, varying, target, "seeds", " (mean, band: ± 1 sample std over seeds)"))
    return Report(jobs, rows, text, files)


def _heading(groups: Sequence[SeedGroup]) -> str:
    seeds = sorted(set().union(*(g.expected for g in groups)), key=_seed_order)
    complete = sum(not g.missing() for g in groups)
    if seeds == ["default"]:
        return f"{len(groups)} groups; no job sets seed=…: each cell is one run (n=1)"
    return (
        f"{len(groups)} group(s) over seeds {', '.join(seeds)}; {complete} with every seed. "
        "Cells: mean ± sample std (n − 1) over the seeds that have the cell (n)."
    )


def _missing_lines(groups: Sequence[SeedGroup]) -> list[str]:
    lines: list[str] = []
    for group in groups:
        overrides = " ".join(group.overrides) or "(no other overrides)"
        lines.extend(f"- [{overrides}] seed {seed}: {why}" for seed, why in group.missing().items())
        lines.extend(f"- [{overrides}] {note}" for note in group.notes)
    return ["", "Missing seeds" + (" and notes:" if any(g.notes for g in groups) else ":"), *lines] if lines else []
