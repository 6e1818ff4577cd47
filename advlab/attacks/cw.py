"""Carlini–Wagner L2 attack (Carlini & Wagner, "Towards evaluating the robustness of neural
networks", 2017), the attack that broke defensive distillation.

It looks for the smallest L2 perturbation that changes the decision, by minimizing
``‖x' − x‖₂² + c · f(x')`` per sample, where ``f`` is the logit-margin objective
(:func:`advlab.attacks.losses.cw_objective`, confidence κ). The image is written
``x' = (tanh(w) + 1) / 2`` so it stays in [0, 1] without clipping ("tanh box"), and ``w`` is
optimized with Adam. A binary search over ``c`` per sample trades distance against success:
after a search step that succeeded ``c`` shrinks, after one that failed it grows. An
optimization stops early once its loss has stopped falling ("early abort").

There is no eps: the result is the closest adversarial found, or the clean image where none
was. The sweep's one :class:`~advlab.attacks.base.AttackStep` (``eps=None``) carries the
per-sample success and L2 distance (``inf`` where it failed), which the evaluation reports as
success rate and median L2.

Defaults (the Python API and ``attack/cw.yaml`` share them, a test keeps them equal): 5 values
of ``c`` from ``c = 1``, 100 Adam steps of lr 0.1 each, early abort — a budget that finds
MNIST adversarials in seconds on a CPU. Carlini & Wagner's own run is far longer (9 search
steps from ``c = 1e-3``, up to 10 000 steps of lr 0.01): set those for a paper-strength attack.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackStep, eval_mode, require_gradients
from advlab.attacks.checks import check_count
from advlab.attacks.losses import check_confidence, check_temperature, cw_objective, margin_gain, reached
from advlab.errors import AdvlabError

# Keeps atanh finite at pixels that are exactly 0 or 1.
_TANH_SHRINK = 1 - 1e-6
# c above this counts as "no upper bound found yet": keep multiplying by 10.
_NO_BOUND = 1e9


def _to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh((2 * x - 1) * _TANH_SHRINK)


def _from_tanh_space(w: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(w) + 1) / 2


class CarliniWagnerL2(Attack):
    """Config-built CW-L2: ``CarliniWagnerL2(steps=100)(model, x, y)``; an attack without eps
    (``eps_values == [None]``) whose strength is not comparable with gradient-step attacks.

    Args:
        confidence: κ, how far past the decision boundary (in logits) a success must be.
        initial_const: the first ``c`` of the binary search.
        binary_search_steps: how many values of ``c`` are tried per sample (>= 1).
        steps: Adam steps per value of ``c`` (>= 1).
        lr: Adam's learning rate in tanh space.
        abort_early: stop an optimization once its loss has not fallen by 0.01 % over a tenth
            of ``steps``.
        targeted: ``y`` holds target classes.
        temperature: the margin is taken on ``logits / temperature`` (equivalent to scaling c).
        max_samples: evaluate this attack on the first N test images only (``None``: all).
    """

    name = "cw"
    norm = "l2"

    def __init__(
        self,
        confidence: float = 0.0,
        initial_const: float = 1.0,
        binary_search_steps: int = 5,
        steps: int = 100,
        lr: float = 0.1,
        abort_early: bool = True,
        targeted: bool = False,
        temperature: float = 1.0,
        max_samples: int | None = None,
    ):
        # no eps: one result per sample, the closest adversarial found (eps_values stays [None])
        super().__init__(targeted, max_samples)
        self.temperature = check_temperature(temperature)
        self.confidence = check_confidence(confidence)
        if not float(initial_const) > 0:
            raise AdvlabError(f"initial_const must be > 0, got {initial_const}: e.g. initial_const=0.01")
        self.initial_const = float(initial_const)
        self.binary_search_steps = check_count(binary_search_steps, "binary_search_steps", 5)
        self.steps = check_count(steps, "steps", 100)
        if not float(lr) > 0:
            raise AdvlabError(f"lr must be > 0, got {lr}: e.g. lr=0.01")
        self.lr = float(lr)
        self.abort_early = bool(abort_early)

    def sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[AttackStep]:
        require_gradients()
        x = x.detach()
        n = len(x)
        lower = torch.zeros(n, device=x.device, dtype=torch.float64)
        upper = torch.full_like(lower, math.inf)
        const = torch.full_like(lower, self.initial_const)
        best_l2 = torch.full((n,), math.inf, device=x.device)
        best_adv = x.clone()
        w_clean = _to_tanh_space(x)
        check_every = max(self.steps // 10, 1)
        with eval_mode(model), torch.enable_grad():
            for _ in range(self.binary_search_steps):
                c = const.to(x.dtype)
                w = w_clean.clone().requires_grad_(True)
                optimizer = torch.optim.Adam([w], lr=self.lr)
                succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
                previous = math.inf
                for step in range(self.steps):
                    x_new = _from_tanh_space(w)
                    logits = model(x_new)
                    l2_sq = (x_new - x).flatten(1).pow(2).sum(1)
                    gain = margin_gain(logits, y, self.temperature, self.targeted)
                    loss = (l2_sq + c * cw_objective(gain, self.confidence)).sum()
                    # the gradient of w only: the model's parameters get no .grad
                    (w.grad,) = torch.autograd.grad(loss, w)
                    with torch.no_grad():
                        hit = reached(gain, self.confidence)
                        l2 = l2_sq.sqrt()
                        closer = hit & (l2 < best_l2)
                        best_l2 = torch.where(closer, l2, best_l2)
                        best_adv[closer] = x_new[closer].detach()
                        succeeded |= hit
                    optimizer.step()
                    if self.abort_early and step % check_every == 0:
                        if loss.item() > previous * 0.9999:
                            break
                        previous = loss.item()
                # success: c can shrink (towards smaller L2); failure: c must grow
                upper = torch.where(succeeded, torch.minimum(upper, const), upper)
                lower = torch.where(succeeded, lower, torch.maximum(lower, const))
                bounded = upper < _NO_BOUND
                const = torch.where(bounded, (lower + upper) / 2, const * 10)
        # zero_grad stays None: the margin objective does not saturate, so it is no masking probe
        yield AttackStep(None, best_adv, success=best_l2.isfinite(), l2=best_l2)

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "loss": "margin",
            "temperature": self.temperature,
            "confidence": self.confidence,
            "initial_const": self.initial_const,
            "binary_search_steps": self.binary_search_steps,
            "steps": self.steps,
            "lr": self.lr,
            "abort_early": self.abort_early,
        }


def cw(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **settings: Any) -> torch.Tensor:
    """Functional CW-L2, ``CarliniWagnerL2(**settings)(model, x, y)`` (settings and defaults: the
    class's): the closest adversarial found per sample (the clean image where none was)."""
    result = CarliniWagnerL2(**settings)(model, x, y)
    assert isinstance(result, torch.Tensor)  # one step: an attack without eps
    return result
