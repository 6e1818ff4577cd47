"""Per-image top-k report: chosen images' top-5 classes and confidences, clean and under one attack
at one eps (the paper's Tables II–III and Figs 1–2).

Configured as an entry of ``cfg.reports`` (see :func:`advlab.run.write_reports`)::

    reports:
      top5:
        _target_: advlab.per_image.top5_report
        _partial_: true
        indices: [7, 16, 20, 27]   # image indices in the data module's full test set
        attack: fgsm               # a name under cfg.attack, or null for clean only
        eps: 0.02                  # in that attack's eps_unit

For every evaluated model it writes ``top5_<model>.md`` (one table per condition),
``top5_<model>.csv`` (one row per image, condition and rank) and one figure per condition
(image on the left, the top-5 confidences as horizontal bars on the right).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from advlab.attacks.base import Attack, eval_mode
from advlab.config import instantiate
from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.plots import class_label, plot_top5
from advlab.tables import format_table


def report_dataset(datamodule: Any) -> Any:
    """The data module's whole test set, so indices mean the same with or without a quick-run
    subset: ``datamodule.dataset`` where the module keeps one, else its test loader's dataset."""
    dataset = getattr(datamodule, "dataset", None)
    if dataset is None:
        if hasattr(datamodule, "setup"):
            datamodule.setup("test")
        dataset = getattr(datamodule, "dataset", None) or datamodule.test_dataloader().dataset
    return dataset


def pick_images(dataset: Any, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """``(images, labels, source files or None)`` for ``indices`` of ``dataset``."""
    indices = [int(i) for i in indices]
    if not indices:
        raise AdvlabError("reports.top5.indices is empty: list the image indices to report, e.g. [7, 16, 20, 27]")
    bad = [i for i in indices if not 0 <= i < len(dataset)]
    if bad:
        raise AdvlabError(f"report image index {bad[0]} is out of range: the test set has {len(dataset)} images (0 … {len(dataset) - 1})")
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


def _attack(cfg: DictConfig, name: str) -> Attack:
    nodes = cfg.get("attack") or {}
    if name not in nodes:
        raise AdvlabError(
            f"reports.top5.attack={name!r} is not a selected attack ({', '.join(map(str, nodes)) or 'none'}): "
            "select it (attack=...) or set reports.top5.attack=null"
        )
    attack = instantiate(nodes[name])
    if not isinstance(attack, Attack):
        raise AdvlabError(f"reports.top5.attack={name!r} is not a per-batch attack: use one such as fgsm or pgd")
    return attack


def top5_report(
    cfg: DictConfig,
    models: Mapping[str, nn.Module],
    results: Mapping[str, Any],
    datamodule: Any,
    indices: Sequence[int] = (7, 16, 20, 27),
    attack: str | None = "fgsm",
    eps: float = 0.02,
    k: int = 5,
) -> dict[str, Path]:
    """Write the per-image top-``k`` tables and figures of every model; returns ``{what: path}``."""
    out_dir = Path(cfg.paths.output_dir)
    dataset = report_dataset(datamodule)
    images, labels, files = pick_images(dataset, indices)
    class_names = list(getattr(datamodule, "class_names", None) or [])
    attack_obj = _attack(cfg, attack) if attack else None
    written: dict[str, Path] = {}
    for label, model in models.items():
        names = class_names or list(getattr(model, "class_names", None) or [])
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x, y = images.to(device), labels.to(device)
        conditions = [("clean", None, x)]
        if attack_obj is not None:
            conditions.append((attack, float(eps), attack_obj.perturb(model, x, y, float(eps))))
        rows: list[dict[str, Any]] = []
        tables: list[str] = []
        for condition, budget, inputs in conditions:
            confidences, classes, probabilities = top_k(model, inputs, k)
            panels, block = [], []
            for n, index in enumerate(indices):
                true = class_label(names, int(labels[n]))
                picked = [class_label(names, int(c)) for c in classes[n]]
                for rank, (cls, conf) in enumerate(zip(picked, confidences[n].tolist()), start=1):
                    row = {
                        "model": label,
                        "architecture": results.get("models", {}).get(label, {}).get("architecture"),
                        "condition": condition,
                        "eps": budget,
                        "eps_unit": attack_obj.eps_unit if budget is not None else None,
                        "image": int(index),
                        "file": files[n],
                        "true_class": true,
                        "true_confidence": float(probabilities[n, int(labels[n])]),
                        "rank": rank,
                        "class": cls,
                        "confidence": conf,
                    }
                    rows.append(row)
                    # the paper's layout: image and true class once, then the k predictions
                    block.append({**row, "image": int(index) if rank == 1 else "", "true_class": true if rank == 1 else "", "confidence": f"{conf:.4f}"})
                panels.append(
                    {
                        "image": inputs[n].detach().cpu(),
                        "title": f"image {index}: {true}",
                        "names": picked,
                        "confidences": confidences[n].tolist(),
                        "highlight": true,
                    }
                )
            what = "clean" if budget is None else f"{condition}, eps {budget:g} ({attack_obj.eps_unit} units)"
            tables.append(f"### {label}: top-{k} classes, {what}\n\n" + format_table(block, ["image", "true_class", "rank", "class", "confidence"], {"image": "image", "true_class": "true class", "class": "predicted class"}))
            key = "clean" if budget is None else f"{condition}_eps{budget:g}"
            written[f"top5_{key}_{label}"] = plot_top5(panels, out_dir / f"top5_{key}_{label}.png", title=f"{results.get('models', {}).get(label, {}).get('architecture') or label}: {what}")
        written[f"top5_table_{label}"] = write_text(out_dir / f"top5_{label}.md", "\n\n".join(tables) + "\n")
        written[f"top5_csv_{label}"] = write_csv(out_dir / f"top5_{label}.csv", rows)
    return written
