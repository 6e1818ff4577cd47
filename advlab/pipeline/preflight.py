"""Checks that run before any training or evaluation, so a bad setting costs seconds, not an epoch.

Each check raises an :class:`AdvlabError` with one line naming the value and the fix. What can
be checked from the config and the data alone runs in :func:`preflight` (called by
:func:`advlab.run.run` once the data module is built); a model is checked against the data with
one forward pass as soon as it is built (:func:`check_model_fits`, from ``fit_classifier``).
"""

from __future__ import annotations

import netrc
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn

from advlab.attacks.base import Attack
from advlab.errors import AdvlabError
from advlab.lit.attack_eval import check_model_modes
from advlab.pipeline.per_image import check_per_image, report_dataset


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdvlabError(f"seed must be an integer, got {value!r}: use e.g. seed=0")
    return value


def check_max_epochs(value: Any, key: str = "trainer.max_epochs") -> None:
    """0 epochs would evaluate and save an untrained network as if it were trained."""
    if value is None or value == -1:  # Lightning's defaults: 1000 epochs, or no limit
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdvlabError(
            f"{key} must be >= 1 (or -1 for no limit), got {value!r}: a model with no training would be "
            "evaluated as trained; to evaluate given weights set model.checkpoint=<file> instead"
        )


def _trains(model_cfg: Any, training_cfg: Any) -> bool:
    """What ``fit_classifier`` decides: given weights, or no recipe, mean no training."""
    return bool(training_cfg) and not (model_cfg.get("checkpoint") or model_cfg.get("weights"))


def check_epochs(cfg: DictConfig) -> None:
    if _trains(cfg.model, cfg.get("training")):
        check_max_epochs(cfg.trainer.get("max_epochs"))
    for name, node in (cfg.get("defense") or {}).items():  # e.g. defense.teacher.max_epochs
        if isinstance(node, Mapping) and node.get("max_epochs") is not None:
            check_max_epochs(node.get("max_epochs"), f"defense.{name}.max_epochs")


def check_accelerator(cfg: DictConfig) -> None:
    accelerator = str(cfg.trainer.get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise AdvlabError(
            f"trainer.accelerator={accelerator} but this machine has no usable GPU "
            f"(torch.cuda.is_available() is False, torch {torch.__version__}): "
            "use trainer=cpu, or trainer.accelerator=auto to take a GPU only when there is one"
        )


def check_target(cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """``evaluation.target`` of targeted attacks: "random" or a class of the data."""
    target = (cfg.get("evaluation") or {}).get("target", "random")
    if target == "random":
        return
    classes = int(datamodule.num_classes)
    index = int(target) if isinstance(target, int) or (isinstance(target, str) and target.isdigit()) else None
    if index is None or isinstance(target, bool):
        raise AdvlabError(f"unknown evaluation.target {target!r}: use a class index (0 … {classes - 1}) or random")
    if not 0 <= index < classes:
        raise AdvlabError(
            f"evaluation.target={index} is out of range: the data has {classes} classes, "
            f"use 0 … {classes - 1} or random"
        )


def _wandb_online(cfg: DictConfig) -> bool:
    from advlab.tracking import wandb_mode

    for node in (cfg.get("logger") or {}).values():
        if isinstance(node, Mapping) and str(node.get("_target_", "")).endswith("WandbLogger"):
            return wandb_mode(bool(node.get("offline", True))) == "online"
    return False


def _wandb_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:  # where `wandb login` saves the key
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_wandb(cfg: DictConfig, timeout: float = 3.0) -> None:
    """Online wandb needs a key and the server: without them wandb would wait (minutes without a
    network) and then fail with a long traceback. Offline runs need neither."""
    if not _wandb_online(cfg):
        return
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host = url.hostname or "api.wandb.ai"
    offline = "log offline with logger.wandb.offline=true (the default; `wandb sync` uploads the run later)"
    if not _wandb_key(host):
        raise AdvlabError(
            f"wandb is set to log online but no API key was found for {host} "
            f"(WANDB_API_KEY or `wandb login`): {offline}"
        )
    try:
        socket.create_connection((host, url.port or (443 if url.scheme != "http" else 80)), timeout=timeout).close()
    except OSError as error:
        raise AdvlabError(f"wandb is set to log online but {host} cannot be reached ({error}): {offline}") from None


def check_attacks(cfg: DictConfig, attacks: Mapping[str, Any], datamodule: L.LightningDataModule) -> None:
    """A patch is trained before it is measured: check its targets, sizes and files against the
    data (class names, image size) now, not after the models are trained. Attacks and evaluation
    agree on the model mode (the reference protocol's train mode)."""
    from advlab.attacks.patch import PatchAttack
    from advlab.pipeline.patch import preflight_patch

    per_batch = {name: attack for name, attack in attacks.items() if isinstance(attack, Attack)}
    check_model_modes(per_batch, (cfg.get("evaluation") or {}).get("model_mode", "eval"))
    for name, attack in attacks.items():
        if isinstance(attack, PatchAttack):
            preflight_patch(cfg, name, attack, datamodule)


def preflight(cfg: DictConfig, attacks: Mapping[str, Any], datamodule: L.LightningDataModule) -> None:
    """Every check that needs no model, before any training (:func:`check_wandb` runs earlier,
    before the job's wandb run is opened)."""
    from advlab.diagnostics import thresholds

    thresholds((cfg.get("evaluation") or {}).get("diagnostics"))  # read after the evaluation: check its keys now
    check_accelerator(cfg)
    check_epochs(cfg)
    check_target(cfg, datamodule)
    check_per_image(cfg, datamodule)
    check_attacks(cfg, attacks, datamodule)


def check_model_fits(model: nn.Module, datamodule: L.LightningDataModule, name: str) -> None:
    """One test image through ``model``: it must accept the data's images and give one logit per
    class of the data. Runs in eval mode without gradients; the model's mode is restored."""
    x, _ = report_dataset(datamodule)[0]
    x = torch.as_tensor(x)[None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x.to(next(model.parameters(), x).device))
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise AdvlabError(
            f"{name} does not accept the data's images ({'×'.join(map(str, x.shape[1:]))}): {first}: "
            "pick a model made for these images (model=…) or other data (data=…)"
        ) from None
    finally:
        model.train(was_training)
    classes = int(datamodule.num_classes)
    if logits.ndim != 2 or logits.shape[-1] != classes:
        got = logits.shape[-1] if logits.ndim == 2 else tuple(logits.shape)
        raise AdvlabError(
            f"{name} gives {got} outputs per image but the data has {classes} classes: "
            f"set model.num_classes={classes} (or pick data with {got} classes)"
        )
