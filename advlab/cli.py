"""The ``advlab`` command: a thin ``@hydra.main`` over :func:`advlab.run.run`.

Exit status: 0 when every job completed; 2 if a job failed on bad input (its one line is
printed); 1 if a job failed on an unexpected error (a traceback); 143 when SIGTERM ended the
command. In a ``-m`` sweep a failed job does not stop the others, but SIGTERM stops the whole
sweep, and the command lists which jobs finished. Every job records how it ended in its
``results.json`` (:mod:`advlab.job_folder`).

SIGTERM: Lightning's trainer only sets a flag on it and then ends the loop with
``SIGTERMException``, a ``SystemExit`` whose status is 0 (and a one-batch evaluation never
checks the flag). Hydra's job runner catches ``Exception`` only, so that ``SystemExit`` left the
whole ``-m`` loop with status 0 and no record; outside the trainer the default action killed
the process before anything was written. advlab installs its own handler for the whole command, which raises
:class:`JobTerminated` wherever the job is; Lightning's trainer calls it after its own handler.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning  # noqa: F401  (imported before Hydra configures logging, so that config applies to it)
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from advlab.config import CONF_DIR
from advlab.errors import AdvlabError, JobTerminated, one_line

log = logging.getLogger("advlab")
# advlab's launcher configs (conf/hydra/launcher/) are complete files named like the plugins'
# schemas, which Hydra then validates them against, with a deprecation notice on every launch.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")
_exit_status = 0
_jobs: list[dict[str, Any]] = []  # the jobs of this command as they end: number, overrides, folder, status
_terminating = False


class DropLightningTips(logging.Filter):
    """Logging filter for Lightning's product tips (they carry no information about the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _job_record(cfg: DictConfig) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    from advlab.run import job_overrides

    number = HydraConfig.get().job.num if _is_multirun() else None
    return {
        "num": number,
        "overrides": job_overrides(),
        "folder": str(cfg.paths.get("output_dir", "?")),
        "status": "running",
    }


def run_job(cfg: DictConfig) -> Any:
    """Run one job; never let one job's failure end a sweep (SIGTERM does: it ends the command)."""
    global _exit_status
    from advlab.run import run

    record = _job_record(cfg)
    _jobs.append(record)
    try:
        result = run(cfg)
        record["status"] = "completed"
        return result
    except JobTerminated:
        record["status"] = "terminated"
        raise
    except AdvlabError as error:
        record["status"] = "failed"
        print(one_line(error), file=sys.stderr)
        _exit_status = max(_exit_status, 2)
    except Exception:
        record["status"] = "failed"
        if not _is_multirun():
            raise
        log.error("job failed:\n%s", traceback.format_exc())
        _exit_status = max(_exit_status, 1)
    return None


def _on_sigterm(signum: int, frame: Any) -> None:
    global _terminating
    if _terminating:  # a second SIGTERM must not interrupt the recording of the first
        return
    _terminating = True
    raise JobTerminated()


def terminated_summary(jobs: list[dict[str, Any]], multirun: bool) -> str:
    """What the command prints when SIGTERM ended it: for a sweep, every started job with its
    status and the overrides that set it apart from the others."""
    if not multirun:
        folder = jobs[-1]["folder"] if jobs else None
        return "advlab: terminated by SIGTERM" + (
            f"; {folder}/results.json records status: terminated" if folder else " before the job started"
        )
    common = set.intersection(*(set(job["overrides"]) for job in jobs)) if len(jobs) > 1 else set()
    done = sum(job["status"] == "completed" for job in jobs)
    lines = [
        f"advlab: sweep terminated by SIGTERM: {done} of {len(jobs)} started job(s) completed; "
        f"the jobs after job {jobs[-1]['num']} did not run"
    ]
    for job in jobs:
        own = " ".join(o for o in job["overrides"] if o not in common)
        lines.append(f"  job {job['num']}: {job['status']:<10} {own}  ({job['folder']})")
    return "\n".join(lines)


def exit_status_of(record: dict[str, Any]) -> int:
    """The exit status a job's ``results.json`` record stands for (the rules at the top)."""
    status = record.get("status")
    if status == "terminated":
        return JobTerminated.exit_status
    if status == "failed":  # AdvlabError and its subclasses are bad input, the rest unexpected
        return 2 if str(record.get("error", "")).split(":")[0] in {"AdvlabError", "FolderInUse"} else 1
    return 0


class SweepExitStatus(Callback):
    """Hydra callback: jobs that ran in other processes (``hydra/launcher=joblib``, submitit) cannot
    set this process's exit status, so it is read back from their ``results.json`` when the sweep
    ends; a job that failed there makes the command fail as it would have in-process."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _exit_status
        for path in sorted(Path(str(config.hydra.sweep.dir)).glob("*/results.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            _exit_status = max(_exit_status, exit_status_of(record))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> Any:
    return run_job(cfg)


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _hydra_main()
    except JobTerminated:
        print(terminated_summary(_jobs, multirun=any(job["num"] is not None for job in _jobs)), file=sys.stderr)
        sys.exit(JobTerminated.exit_status)
    if _exit_status:
        sys.exit(_exit_status)


if __name__ == "__main__":
    main()
