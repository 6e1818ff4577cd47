"""Experiment tracking of one job: the loggers of each stage, one wandb run per job, and the
job's results (per-eps metrics, tables, figures) logged after its evaluation.

A job has stages (the training of each model, then the evaluation of each); every stage's
Trainer gets fresh Lightning loggers from :func:`build_loggers`, chosen with ``logger=…``:

- CSV and TensorBoard write one folder per stage (``logs/<stage>/``, ``tensorboard/<stage>/``),
  each with the job's resolved config as its hyperparameters;
- wandb: the stages share the job's single run. :func:`track_job` (around ``advlab.run.run``)
  opens it when the job starts and finishes it when the job ends (exit code 1 and the error in
  its summary when the job raised), so each job of a multirun is one fresh run. Each stage's
  ``WandbLogger`` prefixes its metrics with the stage: ``undefended/train/loss``.

After the evaluation, :meth:`JobTracker.log_results` logs every attack's rows as series over
their x axis (eps, or patch size), the summary values, the results table and the figures:
to a ``results`` stage for CSV and TensorBoard, to the run itself for wandb
(:mod:`advlab.results_logging` says what is logged and how).

wandb is offline by default: runs are written to ``<job folder>/wandb/offline-run-*`` for a
later ``wandb sync``. ``$WANDB_MODE`` (online, offline, disabled) wins when set; otherwise
``logger.wandb.offline=false`` goes online. wandb's own telemetry stays off unless the user sets
``WANDB_ERROR_REPORTING=true``: wandb-core sends it to wandb's servers even from offline runs.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf, open_dict

from advlab.config import instantiate
from advlab.errors import AdvlabError
from advlab.reports.jobs import result_rows
from advlab.results_logging import (
    IMAGE_SUFFIXES,
    log_series,
    log_to_tensorboard,
    log_to_wandb,
    read_text,
    result_series,
    summary_metrics,
)

log = logging.getLogger(__name__)

_active: JobTracker | None = None


def wandb_mode(offline: bool) -> str:
    """``$WANDB_MODE`` when set, else offline unless ``logger.wandb.offline=false``."""
    return os.environ.get("WANDB_MODE") or ("offline" if offline else "online")


def _target(node: Any) -> str:
    return str(node.get("_target_", "")) if isinstance(node, (Mapping, DictConfig)) else ""


def _is_wandb(node: Any) -> bool:
    return _target(node).endswith("WandbLogger")


def _wandb_node(cfg: DictConfig) -> DictConfig | None:
    return next((node for node in (cfg.get("logger") or {}).values() if _is_wandb(node)), None)


def config_params(cfg: DictConfig) -> dict[str, Any]:
    """The job's config as plain values, resolved where it can be."""
    try:
        return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    except Exception:  # an interpolation that only resolves inside a Hydra job
        return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))


def job_name(cfg: DictConfig) -> str:
    """``<task_name>/<job number>`` in a multirun, ``<task_name>`` otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    name = str(cfg.get("task_name") or "advlab")
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{name}/{HydraConfig.get().job.num}"
    return name


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def build_loggers(cfg: DictConfig, stage: str) -> list[Any]:
    """The loggers chosen with ``logger=…`` for one stage of the job: CSV and TensorBoard write
    under their own ``stage`` version, so the teacher, the student and the evaluation of one run
    do not overwrite each other; wandb loggers all write to the job's one run."""
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is None or "_target_" not in node:
            continue
        if _is_wandb(node):
            loggers.append(_job_tracker(cfg).stage_logger(node, stage))
            continue
        node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
        with open_dict(node):
            if str(node._target_).endswith(("CSVLogger", "TensorBoardLogger")):
                node.version = stage
        logger = instantiate(node)
        logger.log_hyperparams(config_params(cfg))
        loggers.append(logger)
    return loggers


class JobTracker:
    """The tracking of one job: its wandb run (when ``logger=wandb``), the stage loggers that
    share it, and the results logged at the end."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.wandb_run: Any = None
        self._owns_run = False

    def start(self) -> JobTracker:
        node = _wandb_node(self.cfg)
        if node is not None and _is_rank_zero():
            self.wandb_run = self._open_wandb_run(node)
        return self

    def _open_wandb_run(self, node: DictConfig) -> Any:
        import wandb
        from hydra.utils import get_class

        settings = cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))  # node is a DictConfig
        logger_class = get_class(settings.pop("_target_"))
        mode = wandb_mode(bool(settings.pop("offline", True)))
        if settings.get("log_model") and mode != "online":
            raise AdvlabError(
                "logger.wandb.log_model uploads checkpoints, which an offline wandb run cannot do: "
                "set logger.wandb.log_model=false, or logger.wandb.offline=false to log online"
            )
        # wandb-core sends usage telemetry to wandb's servers even from offline runs
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        save_dir = Path(settings.pop("save_dir", None) or self.cfg.paths.output_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        settings["name"] = settings.get("name") or job_name(self.cfg)
        from advlab.run import job_overrides

        config = {**config_params(self.cfg), "overrides": job_overrides()}
        self._owns_run = wandb.run is None  # else Lightning reuses the caller's run: leave it open
        # offline=False: Lightning's offline flag would set WANDB_MODE for the whole process
        # (and every later job); the mode goes to this run's wandb.init instead.
        logger = logger_class(save_dir=str(save_dir), offline=False, mode=mode, config=config, **settings)
        # Lightning always passes anonymous=None, which wandb >= 0.19 warns about on every run.
        if getattr(logger, "_wandb_init", {}).get("anonymous", "unset") is None:
            del logger._wandb_init["anonymous"]
        return logger.experiment

    def stage_logger(self, node: DictConfig, stage: str) -> Any:
        """A ``WandbLogger`` for one stage that writes into the job's run, keys prefixed by stage."""
        from hydra.utils import get_class

        settings = cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))  # node is a DictConfig
        logger_class = get_class(settings.pop("_target_"))
        settings.pop("offline", None)
        logger = logger_class(experiment=self.wandb_run, prefix=stage, offline=False, **settings)
        logger.LOGGER_JOIN_CHAR = "/"  # `undefended/train/loss`: wandb groups charts by stage
        return logger

    def log_results(self, results: Mapping[str, Any]) -> None:
        """Log the job's results to every configured logger (rank 0, after ``results.json``).
        A logger that fails is reported and skipped: the results on disk stay as they are."""
        if not _is_rank_zero() or not results.get("files"):
            return
        series = result_series(results)
        summary = summary_metrics(series)
        figures = {name: path for name, path in results["files"].items() if str(path).lower().endswith(IMAGE_SUFFIXES)}
        table_md = read_text(results["files"].get("results_md"))
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        for logger in build_loggers(self.cfg, "results"):
            try:
                if isinstance(logger, WandbLogger):
                    log_to_wandb(logger.experiment, series, summary, result_rows(results), figures)
                    continue
                log_series(logger, series)
                if isinstance(logger, TensorBoardLogger):  # its HParams view logs the summary values
                    log_to_tensorboard(logger, config_params(self.cfg), summary, figures, table_md)
                elif single := summary_metrics({k: s for k, s in series.items() if s[0] is None}):
                    logger.log_metrics(single, step=0)
                logger.finalize("success")
            except Exception as error:  # tracking must not turn a finished job into a failed one
                log.error("could not log the results to %s: %s: %s", type(logger).__name__, type(error).__name__, error)

    def finish(self, error: BaseException | None = None) -> None:
        """End the job's wandb run (marked failed with ``error``); a run this job did not open is
        left to its owner."""
        global _active
        if _active is self:
            _active = None
        run, self.wandb_run = self.wandb_run, None
        if run is None or not self._owns_run:
            return
        try:
            if error is not None:
                run.summary["error"] = f"{type(error).__name__}: {error}"
            run.finish(exit_code=1 if error is not None else 0)
        except Exception as problem:  # keep the job's own error, if any, as what the user sees
            log.error("could not finish the wandb run: %s: %s", type(problem).__name__, problem)


def _job_tracker(cfg: DictConfig) -> JobTracker:
    """The running job's tracker; loggers built outside :func:`track_job` (a notebook calling
    ``fit_classifier``) start one that lasts until the next job or the end of the process."""
    global _active
    if _active is None:
        _active = JobTracker(cfg).start()
    return _active


def track_job(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Decorator for ``run(cfg)``: one tracked job from start to finish; the results it returns
    are logged to every configured logger before its wandb run ends."""

    @functools.wraps(run)
    def tracked(cfg: DictConfig, *args: Any, **kwargs: Any) -> dict[str, Any]:
        global _active
        if _active is not None:
            _active.finish()
        tracker = _active = JobTracker(cfg)
        try:
            tracker.start()
            results = run(cfg, *args, **kwargs)
            tracker.log_results(results)
        except BaseException as error:
            tracker.finish(error)
            raise
        tracker.finish()
        return results

    return tracked
