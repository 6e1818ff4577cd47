"""The paper's published numbers beside a measured run, or the mean ± std of a seed sweep.

    advlab-report paper outputs/runs/paper_mnist_fgsm/<time>            # one run
    advlab-report paper outputs/multirun/paper_mnist_fgsm/<time>        # seed=0,1,2: mean ± std

The comparison says first whether the run followed the paper's protocol in size: a run on fewer
test images or with fewer training epochs than the paper is flagged as reduced, so its numbers
are never read as a reproduction. The numbers below are quoted from the paper
(../shared/reference/paper.txt) and from the public run PROTOCOLS.md cites; they are reference
data, never used to compute anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advlab.errors import AdvlabError
from advlab.reports.jobs import Job, collect
from advlab.reports.seeds import aggregate, group_jobs, mean_std
from advlab.reports.tables import format_table


@dataclass(frozen=True)
class PaperTable:
    name: str
    attack: str
    test_images: int  # the paper's test set
    epochs: int  # the paper's training epochs
    correct: Mapping[float, int]  # eps -> correct of test_images
    public_run: Mapping[float, float]  # eps -> accuracy of the public run of the paper's code


# Table XIII: FGSM on the MNIST CNN (pixel units, clamped): eps -> correct of 10 000.
# The paper prints 0.2767 for 2727/10000 at eps 0.3, a typo for 0.2727 (PROTOCOLS.md).
TABLE_XIII = PaperTable(
    name="XIII",
    attack="fgsm",
    test_images=10_000,
    epochs=10,
    correct={
        0.0: 9698, 0.007: 9650, 0.01: 9625, 0.02: 9585, 0.03: 9525,
        0.05: 9366, 0.1: 8556, 0.2: 5405, 0.3: 2727,
    },
    public_run={
        0.0: 0.9708, 0.007: 0.9701, 0.01: 0.965, 0.02: 0.9602, 0.03: 0.9552,
        0.05: 0.938, 0.1: 0.852, 0.2: 0.5006, 0.3: 0.2484,
    },
)  # fmt: skip
TABLES = {"XIII": TABLE_XIII}


def _epochs(jobs: Sequence[Job], model: str) -> set[int | None]:
    """Training epochs of ``model`` per job (None where the weights were loaded, not trained)."""
    found: set[int | None] = set()
    for job in jobs:
        training = (((job.results or {}).get("models") or {}).get(model) or {}).get("training") or {}
        found.add(int(training["epochs"]) if training.get("trained") and training.get("epochs") is not None else None)
    return found


def scale_note(table: PaperTable, rows: Sequence[Mapping[str, Any]], jobs: Sequence[Job], model: str) -> str:
    """One line: the run's size against the paper's (test images, training epochs)."""
    images = sorted({int(r["n"]) for r in rows if r.get("n") is not None})
    epochs = _epochs(jobs, model)
    reduced = []
    if images and images[0] < table.test_images:
        reduced.append(f"{'/'.join(map(str, images))} of the paper's {table.test_images} test images")
    trained = sorted(e for e in epochs if e is not None)
    if trained and trained[0] < table.epochs:
        reduced.append(f"{'/'.join(map(str, trained))} of its {table.epochs} training epochs")
    loaded = (
        " (weights loaded from a checkpoint: their training epochs are not recorded here)" if None in epochs else ""
    )
    if reduced:
        return f"**Reduced run**: {' and '.join(reduced)}; not comparable with the paper's numbers.{loaded}"
    return f"Paper-sized run: {table.test_images} test images, {table.epochs} training epochs.{loaded}"


def compare(
    jobs: Sequence[Job], folders: Sequence[Path], table: PaperTable = TABLE_XIII, model: str = "undefended"
) -> str:
    """Markdown: a line on the run's size, then per eps of the paper's table the paper, the public
    run and advlab (mean ± std over seeds when the jobs are a seed sweep)."""
    done = [job for job in jobs if job.status == "completed"]
    if not done:
        raise AdvlabError("no completed run to compare with the paper: give a folder holding a completed results.json")
    groups = group_jobs(done, folders)
    if len(groups) > 1:
        raise AdvlabError(
            f"the folders hold {len(groups)} different configurations (not only different seeds): "
            "give one run or one seed sweep to compare with the paper"
        )
    [group] = groups
    rows = [r for r in aggregate(group) if r["model"] == model and r["attack"] == table.attack]
    if not rows:
        models = sorted({r["model"] for job in done for r in job.rows})
        raise AdvlabError(
            f"no {table.attack} rows for model {model!r} (models: {', '.join(models)}): pick one with --model"
        )
    by_eps = {round(float(r["eps"]), 6): r for r in rows if r.get("eps") is not None}
    seeds = sorted(group.jobs)
    lines = []
    for eps, correct in table.correct.items():
        measured = by_eps.get(round(eps, 6), {})
        lines.append(
            {
                "eps": eps,
                "paper_correct": correct,
                "paper_acc": correct / table.test_images,
                "public_run_acc": table.public_run[eps],
                "advlab_acc": mean_std(measured, "top1_acc") if measured else None,
                "advlab_n": measured.get("n"),
            }
        )
    columns = list(lines[0])
    body = format_table(lines, columns)
    if seeds == ["default"]:
        seeds_line = "advlab: one run (no seed=… override)."
    else:
        seeds_line = f"advlab: {len(seeds)} seed(s) ({', '.join(seeds)}), mean ± sample std where n > 1."
    return f"Table {table.name}, model {model!r}. {scale_note(table, rows, done, model)}\n{seeds_line}\n\n{body}"


def compare_folders(folders: Sequence[str | Path], table: str = "XIII", model: str = "undefended") -> str:
    """The comparison for run or sweep folders (a ``results.json`` path stands for its folder)."""
    paths = [Path(f).parent if Path(f).is_file() else Path(f) for f in folders]
    return compare(collect(paths), paths, TABLES[table], model)
