"""The ``advlab`` command: a thin ``@hydra.main`` over :func:`advlab.run.run`.

A job that fails with an :class:`AdvlabError` prints its one line and is recorded as failed in
its ``results.json``; in a ``-m`` sweep the other jobs go on. The command exits with status 2
if any job failed on bad input, 1 if any failed on an unexpected error.
"""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from typing import Any

import hydra
import lightning  # noqa: F401  (imported before Hydra configures logging, so that config applies to it)
from omegaconf import DictConfig

from advlab.config import CONF_DIR
from advlab.errors import AdvlabError

log = logging.getLogger("advlab")
# advlab's launcher configs (conf/hydra/launcher/) are complete files named like the plugins'
# schemas, which Hydra then validates them against, with a deprecation notice on every launch.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")
_exit_status = 0


class DropLightningTips(logging.Filter):
    """Logging filter for Lightning's product tips (they carry no information about the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig) -> Any:
    """Run one job; never let one job's failure end a sweep."""
    global _exit_status
    from advlab.run import run, write_failure

    try:
        return run(cfg)
    except AdvlabError as error:
        write_failure(cfg, error)
        print(f"advlab: error: {error}", file=sys.stderr)
        _exit_status = max(_exit_status, 2)
    except Exception as error:
        write_failure(cfg, error)
        if not _is_multirun():
            raise
        log.error("job failed:\n%s", traceback.format_exc())
        _exit_status = max(_exit_status, 1)
    return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> Any:
    return run_job(cfg)


def main() -> None:
    _hydra_main()
    if _exit_status:
        sys.exit(_exit_status)


if __name__ == "__main__":
    main()
