"""Config helpers: the project-root and job-stamp resolvers, the conf folder, and instantiate()
that keeps advlab's one-line errors (Hydra would wrap them in a multi-line InstantiationException)."""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from advlab.errors import AdvlabError

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"


def project_root() -> str:
    """``$ADVLAB_ROOT``, else the source checkout (the folder holding pyproject.toml), else the working folder."""
    if os.environ.get("ADVLAB_ROOT"):
        return os.environ["ADVLAB_ROOT"]
    if (PACKAGE_DIR.parent / "pyproject.toml").is_file():
        return str(PACKAGE_DIR.parent)
    return os.getcwd()


def job_stamp() -> str:
    """A job folder's name: local time to the microsecond plus 6 random hex digits, e.g.
    ``2026-12-04_21-20-30.123456-3fa9c1``. Jobs started in the same second (a sweep array on a
    cluster, two terminals) get different folders; the name still sorts by start time."""
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S.%f}-{secrets.token_hex(3)}"


if not OmegaConf.has_resolver("advlab_root"):
    OmegaConf.register_new_resolver("advlab_root", project_root)
# Cached like Hydra's ${now:}: one value per composed config, which Hydra copies into every job
# of a sweep, so the sweep folder and the wandb group name agree.
if not OmegaConf.has_resolver("advlab_stamp"):
    OmegaConf.register_new_resolver("advlab_stamp", job_stamp, use_cache=True)
# `${as_sweep:${attack.patch.target}}`: a config list as a sweeper's "a,b,c", so a -m sweep
# and a one-job run read the same list (experiment/mnist_patch.yaml)
if not OmegaConf.has_resolver("as_sweep"):
    OmegaConf.register_new_resolver("as_sweep", lambda values: ",".join(str(v) for v in values))


def instantiate(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that re-raises an :class:`AdvlabError` from inside the target
    as itself, so the user sees its one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, AdvlabError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise AdvlabError(_first_line(exc)) from exc


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:400]


def to_dict(node: DictConfig | Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
