"""AutoAttack's own sanity flags, read off a run's result rows (warnings like
:mod:`advlab.diagnostics`' ``{"model", "check", "attack", "message"}``).

``randomized``          the model gave different logits for the same input in eval mode: a
                        randomised defence needs an expectation-over-transformation attack.
``probability_output``  the outputs are non-negative rows summing to 1: the attacks expect
                        logits, and the CE/DLR losses misbehave on probabilities.
``square_beats_gradient``  Square (no gradients) broke images both APGD runs left robust:
                        the gradients are unreliable (masking), so the gradient attacks' numbers
                        overstate robustness.

The zero-gradient flag is the existing ``zero_gradient`` check (AutoAttack reports the first
APGD gradient's zero mask like every gradient attack).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SQUARE_GAIN = 0.002  # AutoAttack flags Square lowering robust accuracy by more than this


def autoattack_warnings(model: str, attacks: Mapping[str, Any]) -> list[dict[str, Any]]:
    warnings = []
    for name, block in attacks.items():
        for row in block.get("rows", []):
            eps = row.get("eps")
            where = f"{name} at eps {eps:g}" if isinstance(eps, (int, float)) else name
            checks = (
                (
                    "randomized",
                    row.get("randomized_share"),
                    0.0,
                    (
                        "images gave different logits for the same input in eval mode: a randomised model; "
                        "attack it with expectation over transformation (AutoAttack's rand version)"
                    ),
                ),
                (
                    "probability_output",
                    row.get("probability_output_share"),
                    0.0,
                    "outputs look like probabilities (non-negative, rows sum to 1): give the attacks logits",
                ),
                (
                    "square_beats_gradient",
                    row.get("square_only_share"),
                    SQUARE_GAIN,
                    (
                        "of the images were broken only by Square (no gradients) after both APGD runs: "
                        "the gradients mislead the gradient attacks (masking)"
                    ),
                ),
            )
            for check, share, limit, text in checks:
                if share is not None and share > limit:
                    warnings.append(
                        {
                            "model": model,
                            "check": check,
                            "attack": name,
                            "message": f"{where}: {share:.2%} {text}",
                        }
                    )
    return warnings
