"""Per-image top-k predictions, an evaluation step: chosen test images' top-k classes and
confidences, clean and under one attack at one eps (what the paper's Tables II–III and Figs 1–2
show). Selected with ``reports=top5``, which sets::

    evaluation:
      per_image:
        indices: [7, 16, 20, 27]   # image indices in the data module's full test set
        attack: fgsm               # a name under cfg.attack, or null for clean only
        eps: 0.02                  # in that attack's eps_unit
        k: 5

Its rows go into ``results.json`` (``models.<label>.per_image``); :func:`advlab.reports.extras.
top5_report` formats them (and draws the images returned here) into tables and figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from omegaconf import DictConfig
from torch import nn

from advlab.attacks.base import BoundedAttack, eval_mode
from advlab.config import instantiate
from advlab.errors import AdvlabError
from advlab.reports.plots import class_label


@dataclass
class PerImage:
    """One model's predictions: JSON rows, and the (attacked) images per (condition, eps)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    images: dict[tuple[str, float | None], torch.Tensor] = field(default_factory=dict)


def report_dataset(datamodule: Any) -> Any:
    """The data module's whole test set, so indices mean the same with or without a quick-run
    subset: ``datamodule.dataset`` where the module keeps one, else its test loader's dataset."""
    dataset = getattr(datamodule, "dataset", None)
    if dataset is None:
        if hasattr(datamodule, "setup"):
            datamodule.setup("test")
        dataset = getattr(datamodule, "dataset", None) or datamodule.test_dataloader().dataset
    return dataset


def check_indices(indices: Sequence[int], size: int) -> list[int]:
    """The indices as ints, or a one-line error when one is outside a test set of ``size`` images."""
    indices = [int(i) for i in indices]
    if not indices:
        raise AdvlabError(
            "evaluation.per_image.indices is empty: list the image indices to report, e.g. [7, 16, 20, 27]"
        )
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise AdvlabError(
            f"report image index {bad[0]} is out of range: the test set has {size} images (0 … {size - 1})"
        )
    return indices


def pick_images(dataset: Any, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """``(images, labels, source files or None)`` for ``indices`` of ``dataset``."""
    indices = check_indices(indices, len(dataset))
    items = [dataset[i] for i in indices]
    samples = getattr(dataset, "samples", None)
    files = [str(samples[i][0]) if samples is not None else None for i in indices]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items]), files


def top_k(model: nn.Module, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(top-k confidences, top-k classes, all probabilities)`` of ``model`` on ``x``, in eval mode."""
    with torch.no_grad(), eval_mode(model):
        probabilities = model(x).float().softmax(dim=1)
    confidences, classes = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return confidences, classes, probabilities


def build_attack(cfg: DictConfig, name: str, eps: float | None = None) -> BoundedAttack:
    """The selected attack ``name``, at the single budget ``eps`` when given."""
    nodes = cfg.get("attack") or {}
    if name not in nodes:
        raise AdvlabError(
            f"evaluation.per_image.attack={name!r} is not a selected attack ({', '.join(map(str, nodes)) or 'none'}): "
            "select it (attack=...) or set evaluation.per_image.attack=null"
        )
    attack = instantiate(nodes[name], **({} if eps is None else {"eps": eps}))
    if not isinstance(attack, BoundedAttack):  # one budget at a time: an eps-ball attack
        raise AdvlabError(
            f"evaluation.per_image.attack={name!r} is not a per-batch attack: use one such as fgsm or pgd"
        )
    return attack


def check_per_image(cfg: DictConfig, datamodule: Any) -> None:
    """Before any training: the ``evaluation.per_image`` indices fit the test set and its attack
    is a selected per-batch attack (a late failure would throw the trained models away)."""
    settings = (cfg.get("evaluation") or {}).get("per_image")
    if not settings:
        return
    check_indices(list(settings.get("indices") or []), len(report_dataset(datamodule)))
    if settings.get("attack"):
        build_attack(cfg, str(settings.get("attack")))


def predict_per_image(
    cfg: DictConfig,
    models: Mapping[str, nn.Module],
    datamodule: Any,
    architectures: Mapping[str, str | None] | None = None,
) -> dict[str, PerImage]:
    """Every model's top-k predictions of the ``evaluation.per_image`` images; ``{}`` when that
    setting is absent or null."""
    settings = (cfg.get("evaluation") or {}).get("per_image")
    if not settings:
        return {}
    indices = list(settings.get("indices") or [])
    attack_name, eps, k = settings.get("attack"), float(settings.get("eps", 0.0)), int(settings.get("k", 5))
    images, labels, files = pick_images(report_dataset(datamodule), indices)
    class_names = list(getattr(datamodule, "class_names", None) or [])
    attack = build_attack(cfg, attack_name, eps) if attack_name else None
    found: dict[str, PerImage] = {}
    for label, model in models.items():
        names = class_names or list(getattr(model, "class_names", None) or [])
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x, y = images.to(device), labels.to(device)
        conditions: list[tuple[str, float | None, torch.Tensor]] = [("clean", None, x)]
        if attack is not None:
            adversarial = cast(torch.Tensor, attack(model, x, y))  # built with one eps: one tensor
            conditions.append((str(attack_name), eps, adversarial))
        output = found[label] = PerImage()
        for condition, budget, inputs in conditions:
            output.images[(condition, budget)] = inputs.detach().cpu()
            confidences, classes, probabilities = top_k(model, inputs, k)
            for n, index in enumerate(indices):
                for rank, (cls, conf) in enumerate(zip(classes[n].tolist(), confidences[n].tolist()), start=1):
                    output.rows.append(
                        {
                            "model": label,
                            "architecture": (architectures or {}).get(label),
                            "condition": condition,
                            "eps": budget,
                            "eps_unit": attack.eps_unit if attack is not None and budget is not None else None,
                            "image": int(index),
                            "file": files[n],
                            "true_class": class_label(names, int(labels[n])),
                            "true_confidence": float(probabilities[n, int(labels[n])]),
                            "rank": rank,
                            "class": class_label(names, int(cls)),
                            "confidence": conf,
                        }
                    )
    return found
