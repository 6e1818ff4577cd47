"""Each job writes into a folder of its own, and the folder's files always tell one story.

- Claiming: a job starts by creating ``results.json`` with ``status: running`` in its folder, in
  one atomic step that fails if the file exists (:func:`advlab.io.create_json`). Of two jobs
  pointed at one folder exactly one gets it; the other stops with a one-line error. A sweep
  claims its folder the same way through ``multirun.yaml``.
- A folder that already holds a job's files is refused (one line naming ``overwrite=true``) and
  left as it was; with ``overwrite=true`` the old job's files are removed first.
- The job's end is recorded in ``results.json``: ``completed`` written last, after every table
  and figure, or ``failed`` / ``terminated`` / ``interrupted`` with the error.

From the command line the claim happens in a Hydra callback (:class:`ClaimJobFolder`), before
Hydra writes ``.hydra/`` or the job log into the folder; :func:`advlab.run.run` claims it itself
when called from Python (and inside each job of a sweep).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from advlab.errors import AdvlabError, FolderInUse, JobTerminated, one_line
from advlab.io import create_json, write_json

# What an advlab job (or sweep) writes into its folder: removed by overwrite=true, and the
# sign that a folder is taken. Hydra's own .hydra/ and job log come back with every job; they
# alone do not make a folder taken (a sweep job's folder has them before the job starts).
JOB_FILES = (
    "results.*",
    "*.pt",
    "*.png",
    "*_loss.csv",
    "top5_*",
    "patch_tables.md",
    "checkpoints",
    "logs",
    "tensorboard",
    "wandb",
    "lightning_logs",
    "patches",
)
HYDRA_FILES = (".hydra", "*.log")
SWEEP_FILES = ("multirun.yaml", "summary*", "seeds*")

_claimed: set[str] = set()  # folders this process claimed and has not finished with


def _key(folder: str | os.PathLike) -> str:
    return os.path.abspath(folder)


def _entries(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({path for pattern in patterns for path in folder.glob(pattern)})


def is_rank_zero() -> bool:
    """False in the extra processes of a multi-process (DDP) job: they share rank 0's folder."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _previous_status(folder: Path) -> str:
    try:
        return f"results.json says {json.loads((folder / 'results.json').read_text())['status']}"
    except (OSError, ValueError, KeyError, TypeError):
        names = [p.name for p in _entries(folder, JOB_FILES)][:3]
        return f"it has {', '.join(names)}"


def _refuse(folder: Path, why: str, sweep: bool = False) -> FolderInUse:
    where = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    return FolderInUse(
        f"{folder} {why}: pick another folder ({where}=… or paths.log_dir=…), "
        "or add overwrite=true to replace its results"
    )


def _unwritable(folder: Path, error: OSError) -> AdvlabError:
    return AdvlabError(
        f"cannot write to the output folder {folder} ({error.strerror or error}): "
        "set paths.log_dir (or hydra.run.dir) to a folder you can write to"
    )


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(folder, error) from None


def _listed_files(folder: Path) -> list[Path]:
    """The files a completed job's ``results.json`` lists (reports name their own files)."""
    try:
        listed = json.loads((folder / "results.json").read_text()).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return []
    paths = [Path(p) for p in listed.values() if isinstance(p, str)] if isinstance(listed, dict) else []
    return [p for p in paths if p.parent.resolve() == folder.resolve()]


def remove_job_files(folder: Path) -> None:
    """Delete what a previous job wrote into ``folder`` (overwrite=true): the files its
    ``results.json`` lists, its results, figures, weights, checkpoints, logger folders,
    ``.hydra/`` and job log. Other files stay."""
    for path in _listed_files(folder) + _entries(folder, JOB_FILES + HYDRA_FILES):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def check_overwrite(value: Any) -> bool:
    if not isinstance(value, bool):
        raise AdvlabError(
            f"overwrite must be true or false, got {value!r}: use overwrite=true to replace a folder's results"
        )
    return value


def claim(folder: str | os.PathLike, overwrite: bool = False, about: dict[str, Any] | None = None) -> Path:
    """Make ``folder`` this job's: refuse it if it holds another job's files (unless
    ``overwrite``, which removes them), then create ``results.json`` with ``status: running``.
    A folder this process already claimed is returned as it is."""
    folder = Path(_key(folder))
    if _key(folder) in _claimed or not is_rank_zero():
        return folder
    _make_folder(folder)
    if _entries(folder, JOB_FILES):
        if not check_overwrite(overwrite):
            raise _refuse(folder, f"already holds a job's results ({_previous_status(folder)})")
        remove_job_files(folder)
    record = {
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    try:
        create_json(folder / "results.json", {**record, **(about or {})})
    except FileExistsError:
        raise _refuse(folder, "was just claimed by another job started at the same moment") from None
    except OSError as error:
        raise _unwritable(folder, error) from None
    _claimed.add(_key(folder))
    return folder


def claim_sweep(folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Make ``folder`` this sweep's: the same rules as :func:`claim`, with ``multirun.yaml`` (which
    Hydra fills right after) as the claim. Overwriting removes the old job subfolders whole, so a
    smaller new sweep leaves none of the old jobs behind for the summary to pick up."""
    folder = Path(_key(folder))
    _make_folder(folder)
    jobs = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and _entries(p, JOB_FILES + HYDRA_FILES)]
    if jobs or _entries(folder, SWEEP_FILES):
        if not check_overwrite(overwrite):
            raise _refuse(folder, f"already holds an earlier sweep ({len(jobs)} job folders)", sweep=True)
        for job in jobs:
            shutil.rmtree(job)
        for path in _entries(folder, SWEEP_FILES):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    try:
        with open(folder / "multirun.yaml", "x", encoding="utf-8"):
            pass
    except FileExistsError:
        raise _refuse(folder, "was just claimed by another sweep started at the same moment", sweep=True) from None
    except OSError as error:
        raise _unwritable(folder, error) from None
    return folder


def status_of(error: BaseException) -> str:
    if isinstance(error, JobTerminated):
        return "terminated"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return "failed"


def finish(
    folder: str | os.PathLike, error: BaseException | None = None, about: dict[str, Any] | None = None
) -> Path | None:
    """Release a claimed folder; with ``error``, record the job's end in ``results.json``
    (``failed``, ``terminated`` or ``interrupted``). A folder this process did not claim (refused,
    or rank > 0 of a DDP job) is left alone."""
    key = _key(folder)
    if key not in _claimed:
        return None
    _claimed.discard(key)
    if error is None:
        return None
    record = {"status": status_of(error), **(about or {})}
    record["error"] = (
        "terminated by SIGTERM" if isinstance(error, JobTerminated) else f"{type(error).__name__}: {error}"
    )
    return write_json(Path(key) / "results.json", record)


class ClaimJobFolder(Callback):
    """Hydra callback: claim the run (or sweep) folder before Hydra writes anything into it; a
    folder that is taken or unwritable stops the command with one line and exit status 2."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        about = {"task_name": config.get("task_name"), "overrides": list(config.hydra.overrides.task)}
        self._claim(lambda: claim(config.hydra.run.dir, config.get("overwrite", False), about))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(lambda: claim_sweep(config.hydra.sweep.dir, config.get("overwrite", False)))

    @staticmethod
    def _claim(action: Any) -> None:
        try:
            action()
        except AdvlabError as error:
            print(one_line(error), file=sys.stderr)
            raise SystemExit(2) from None
