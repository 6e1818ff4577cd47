"""What the attack evaluation (:mod:`advlab.lit.attack_eval`) measures for the clean images and
for each (attack, eps) cell: torchmetrics tallies, summed across processes under DDP, and the
result row they give."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.aggregation import CatMetric, MaxMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from advlab.attacks.base import AttackStep


def accuracy_metrics(num_classes: int) -> MetricCollection:
    metrics: dict[str, Metric | MetricCollection] = {
        "top1": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro")
    }
    if num_classes >= 5:
        metrics["top5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


class Tally(nn.Module):
    """Everything measured for one (attack, eps) cell or for the clean images."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.accuracy = accuracy_metrics(num_classes)
        self.count = SumMetric()
        self.zero_grad_count = SumMetric()
        self.targeted_hits = SumMetric()
        self.max_linf = MaxMetric()
        # attacks that measure an L2 distance (PGD-L2, CW): the largest one, and for attacks that
        # report per-sample success (CW) the successes among clean-correct images and their L2
        self.max_l2 = MaxMetric()
        self.success_count = SumMetric()
        self.success_total = SumMetric()
        self.success_l2 = CatMetric()
        self.updated: set[str] = set()  # which optional tallies were fed, so compute() skips the rest
        # per-image values an attack step reports itself (AttackStep.extras), summed here;
        # single-process only (not reduced under DDP)
        self.extras: dict[str, float] = {}

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.accuracy.update(logits, labels)
        self.count.update(torch.tensor(float(len(labels)), device=logits.device))

    def update_success(self, success: torch.Tensor, l2: torch.Tensor, clean_correct: torch.Tensor) -> None:
        counted = success & clean_correct
        self.success_count.update(counted.float().sum())
        self.success_total.update(clean_correct.float().sum())
        self.success_l2.update(l2[counted].float())
        self.updated.add("success")

    def success_row(self) -> dict[str, Any]:
        """Success rate among the clean-correct images and the median/mean L2 of those successes."""
        total = float(self.success_total.compute())
        row: dict[str, Any] = {"success_rate": float(self.success_count.compute()) / total if total else None}
        distances = self.success_l2.compute()  # an empty list when nothing succeeded
        distances = distances.flatten() if isinstance(distances, torch.Tensor) else torch.empty(0)
        row["median_l2"] = float(distances.median()) if distances.numel() else None
        row["mean_l2"] = float(distances.mean()) if distances.numel() else None
        return row

    def compute(self) -> dict[str, float]:
        values = {name: float(v) for name, v in self.accuracy.compute().items()}
        n = int(round(float(self.count.compute())))
        row: dict[str, Any] = {"n": n, "correct": int(round(values["top1"] * n))}
        for k in ("top1", "top5"):
            if k in values:
                row[f"{k}_acc"] = values[k]
                row[f"{k}_err"] = 1.0 - values[k]
        return row

    def record(
        self,
        step: AttackStep,
        x: torch.Tensor,
        adv_logits: torch.Tensor,
        clean_correct: torch.Tensor,
        norm: str,
        goal: torch.Tensor | None,
    ) -> None:
        """What one attack step gives besides accuracy, on the clean images ``x``: distances,
        success, extras, the zero-gradient probe, and (``goal``: a targeted attack's target
        classes) the images classified as the target."""
        x_adv = step.x_adv
        self.max_linf.update((x_adv - x).abs().amax())
        if norm == "l2":
            self.max_l2.update((x_adv - x).flatten(1).norm(dim=1).amax())
            self.updated.add("l2")
        if step.success is not None and step.l2 is not None:
            self.update_success(step.success, step.l2, clean_correct)
        for key, values in (step.extras or {}).items():
            self.extras[key] = self.extras.get(key, 0.0) + float(values.float().sum())
        if step.zero_grad is not None:
            self.zero_grad_count.update(step.zero_grad.float().sum())
            self.updated.add("zero_grad")
        if goal is not None:
            self.targeted_hits.update((adv_logits.argmax(1) == goal).float().sum())
            self.updated.add("targeted_hits")

    def attack_row(self, eps: float | None, strength: int | None) -> dict[str, Any]:
        """The result row of one (attack, eps) cell: accuracy, counts, and what was recorded."""
        row = {"eps": eps, **self.compute(), "max_linf": float(self.max_linf.compute())}
        row["strength"] = strength
        n = row["n"] or 1
        row["zero_grad_share"] = float(self.zero_grad_count.compute()) / n if "zero_grad" in self.updated else None
        row.update({key: total / n for key, total in self.extras.items()})
        if "targeted_hits" in self.updated:
            row["target_rate"] = float(self.targeted_hits.compute()) / n
        if "l2" in self.updated:
            row["max_l2"] = float(self.max_l2.compute())
        if "success" in self.updated:
            row.update(self.success_row())
        return row
