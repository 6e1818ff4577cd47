"""Gradient-masking diagnostics: warnings read off a run's results (Carlini et al., "On
evaluating adversarial robustness", 2019, list these signs of a defense that only hides its
gradients).

Three checks per model, each a warning ``{"model", "check", "attack", "message"}``:

``zero_gradient``          a share of samples whose input gradient is exactly zero: the softmax
                           saturates, sign(0) = 0 and a gradient attack cannot move at all.
``weaker_beats_stronger``  at the same budget, an attack with fewer gradient steps leaves lower
                           accuracy than one with more: the stronger one is being misled.
``no_fall``                accuracy does not fall towards 0 as eps grows large (still above half
                           the clean accuracy at a large L∞ budget), or rises with eps. Not for a
                           network at chance level when clean: it has nothing to lose. The
                           large-budget part only applies beyond the eps a defense was trained
                           to hold (adversarial training's ``eps``): a network adversarially
                           trained at 0.3 is expected to keep its accuracy at 0.3, and is checked
                           at larger budgets.

Attacks are told apart by what their rows and settings declare (``strength``: gradient steps
per image, ``norm``, ``eps_unit``, ``targeted``), never by their names, so a new attack takes
part in every check (:mod:`advlab.attacks.base`).

The thresholds are deliberately loose: a warning means "look closer", not "broken".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from advlab.autoattack_checks import autoattack_warnings
from advlab.errors import AdvlabError


@dataclass(frozen=True)
class Thresholds:
    zero_grad_share: float = 0.05  # warn when at least 5 % of the gradients are exactly zero
    tolerance: float = 0.02  # accuracy gap that counts, on top of two standard errors
    large_linf: float = 0.3  # a "large" L∞ budget in [0, 1] pixel units (MNIST's standard)
    no_fall_share: float = 0.5  # at that budget, accuracy above this share of clean accuracy warns


def thresholds(settings: Mapping[str, Any] | None) -> Thresholds:
    """``Thresholds`` from the ``evaluation.diagnostics`` config section (missing keys: defaults)."""
    known = set(Thresholds.__dataclass_fields__)
    unknown = sorted(set(settings or {}) - known)
    if unknown:
        raise AdvlabError(f"unknown key evaluation.diagnostics.{unknown[0]}: use {', '.join(sorted(known))}")
    return Thresholds(**{k: float(v) for k, v in (settings or {}).items()})


def _gap(a: Mapping[str, Any], b: Mapping[str, Any], tolerance: float) -> float:
    """The accuracy difference two rows need before it counts: ``tolerance`` plus two standard
    errors of the difference (the rows may be measured on different numbers of images)."""
    variance = 0.0
    for row in (a, b):
        p, n = row["top1_acc"], max(int(row.get("n") or 1), 1)
        variance += p * (1 - p) / n
    return tolerance + 2 * math.sqrt(variance)


def _zero_gradient(model: str, attacks: Mapping[str, Any], limits: Thresholds) -> list[dict[str, Any]]:
    warnings = []
    for name, block in attacks.items():
        shares = [r["zero_grad_share"] for r in block.get("rows", []) if r.get("zero_grad_share") is not None]
        if shares and max(shares) >= limits.zero_grad_share:
            settings = block.get("settings", {})
            warnings.append(
                {
                    "model": model,
                    "check": "zero_gradient",
                    "attack": name,
                    "message": (
                        f"{name}: {max(shares):.0%} of the input gradients are exactly zero "
                        f"(loss {settings.get('loss')}, temperature {settings.get('temperature')}): the softmax "
                        "saturates and the attack cannot move (gradient masking); attack the logits "
                        "(loss=margin) or logits / T"
                    ),
                }
            )
    return warnings


def _budget_key(settings: Mapping[str, Any], row: Mapping[str, Any]) -> tuple[Any, ...] | None:
    if row.get("eps") is None:
        return None
    return (
        round(float(row["eps"]), 12),
        settings.get("eps_unit"),
        settings.get("norm", "linf"),
        bool(settings.get("targeted")),
    )


def _weaker_beats_stronger(model: str, attacks: Mapping[str, Any], limits: Thresholds) -> list[dict[str, Any]]:
    cells: dict[tuple[Any, ...], list[tuple[str, int, Mapping[str, Any]]]] = {}
    for name, block in attacks.items():
        settings = block.get("settings", {})
        if settings.get("targeted"):
            continue
        for row in block.get("rows", []):
            key = _budget_key(settings, row)
            if key is None or key[0] <= 0 or row.get("top1_acc") is None:
                continue
            strength = row.get("strength")  # gradient steps per image; None: not comparable
            if strength is not None:
                cells.setdefault(key, []).append((name, strength, row))
    warnings = []
    for (eps, *_), entries in sorted(cells.items(), key=lambda item: item[0][0]):
        for strong, strong_steps, strong_row in entries:
            # the weaker attack that did most damage, if it clearly beats this one
            beaten_by = [
                (weak_row["top1_acc"], weak, weak_steps, weak_row)
                for weak, weak_steps, weak_row in entries
                if weak_steps < strong_steps
                and strong_row["top1_acc"] - weak_row["top1_acc"] > _gap(weak_row, strong_row, limits.tolerance)
            ]
            if beaten_by:
                _, weak, weak_steps, weak_row = min(beaten_by, key=lambda item: item[0])
                warnings.append(
                    {
                        "model": model,
                        "check": "weaker_beats_stronger",
                        "attack": strong,
                        "message": (
                            f"{weak} ({weak_steps} gradient step{'s' if weak_steps > 1 else ''}) beats {strong} "
                            f"({strong_steps} steps) at eps {eps:g}: accuracy {weak_row['top1_acc']:.2%} vs "
                            f"{strong_row['top1_acc']:.2%}; the stronger attack's gradients mislead it (masking)"
                        ),
                    }
                )
    return warnings


def _at_chance(evaluation: Mapping[str, Any], tolerance: float) -> bool:
    """Clean accuracy within noise of guessing (1 / classes): an untrained or broken network."""
    clean, classes = evaluation.get("clean") or {}, evaluation.get("num_classes")
    if clean.get("top1_acc") is None or not classes:
        return False
    chance = {"top1_acc": 1.0 / int(classes), "n": clean.get("n")}
    return clean["top1_acc"] - chance["top1_acc"] <= _gap(clean, chance, tolerance)


def _no_fall(
    model: str, evaluation: Mapping[str, Any], limits: Thresholds, trained_eps: float | None = None
) -> list[dict[str, Any]]:
    clean = (evaluation.get("clean") or {}).get("top1_acc")
    warnings: list[dict[str, Any]] = []
    if _at_chance(evaluation, limits.tolerance):
        return warnings
    for name, block in evaluation.get("attacks", {}).items():
        settings = block.get("settings", {})
        if settings.get("targeted"):
            continue
        rows = sorted(
            (r for r in block.get("rows", []) if r.get("eps") is not None and r.get("top1_acc") is not None),
            key=lambda r: r["eps"],
        )
        if not rows:
            continue
        message = None
        largest = rows[-1]
        plain_linf = settings.get("eps_unit", "pixel") == "pixel" and settings.get("norm", "linf") == "linf"
        if (
            clean
            and plain_linf
            and largest["eps"] >= limits.large_linf - 1e-9
            and (trained_eps is None or largest["eps"] > trained_eps + 1e-9)
            and largest["top1_acc"] > limits.no_fall_share * clean
        ):
            message = (
                f"{name}: accuracy is still {largest['top1_acc']:.2%} at eps {largest['eps']:g} (clean {clean:.2%}); "
                "it should fall towards 0 as eps grows large (gradient masking, or a too weak attack)"
            )
        else:
            for before, after in zip(rows, rows[1:]):
                if after["top1_acc"] - before["top1_acc"] > _gap(before, after, limits.tolerance):
                    message = (
                        f"{name}: accuracy rises from {before['top1_acc']:.2%} at eps {before['eps']:g} to "
                        f"{after['top1_acc']:.2%} at eps {after['eps']:g}; a larger budget should never help the "
                        "model (gradient masking, or a too weak attack)"
                    )
                    break
        if message:
            warnings.append({"model": model, "check": "no_fall", "attack": name, "message": message})
    return warnings


def masking_warnings(
    evaluation: Mapping[str, Any],
    model: str = "model",
    limits: Thresholds = Thresholds(),
    trained_eps: float | None = None,
) -> list[dict[str, Any]]:
    """All warnings for one model's ``evaluation`` block (``{"clean": …, "attacks": …}``);
    ``trained_eps``: the L∞ budget the model was adversarially trained to hold, if any."""
    attacks = evaluation.get("attacks", {})
    return [
        *_zero_gradient(model, attacks, limits),
        *_weaker_beats_stronger(model, attacks, limits),
        *_no_fall(model, evaluation, limits, trained_eps),
        *autoattack_warnings(model, attacks),
    ]


def add_warnings(results: dict[str, Any], limits: Thresholds = Thresholds()) -> list[dict[str, Any]]:
    """Put every model's warnings into ``results["warnings"]``; returns them."""
    warnings = [
        warning
        for label, entry in results.get("models", {}).items()
        for warning in masking_warnings(entry.get("evaluation", {}), label, limits, _trained_eps(entry))
    ]
    results["warnings"] = warnings
    return warnings


def _trained_eps(entry: Mapping[str, Any]) -> float | None:
    """The budget an adversarially trained model was trained at (its training record's ``eps``)."""
    training = entry.get("training") or {}
    if entry.get("defense") != "adversarial_training" or training.get("eps") is None:
        return None
    return float(training["eps"])


def format_warnings(warnings: list[Mapping[str, Any]]) -> str:
    """One line per warning, for the end of a run's console output."""
    return "\n".join(f"WARNING {w['model']}: {w['message']}" for w in warnings)
