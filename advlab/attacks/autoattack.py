"""AutoAttack (Croce & Hein, ICML 2020), standard version: APGD-CE, then APGD-T (DLR, top-9
targets), then Square (5 000 queries), each run only on the images every earlier attack left
correctly classified; per image the first adversarial found is kept (the worst case over the
ensemble), so the ensemble is never weaker than any of its parts on the same images.

FAB-T (the third component of the original) is not built here: it is a minimum-norm attack
that needs its own linearised-projection solver, and in Croce & Hein's tables it adds little on
top of the two APGD runs for most defences. The rows say which components ran.

Besides the final accuracy, each step carries per-sample masks in ``AttackStep.extras`` (summed
into the result rows as shares): robust after each component (``<component>_acc``) and AutoAttack's
own sanity flags — a randomised model (``randomized_share``: different logits for the same
input in eval mode), probability outputs (``probability_output_share``: non-negative rows
summing to 1), images only Square broke (``square_only_share``). The first APGD gradient's
zero mask is the step's ``zero_grad`` (the zero-gradient flag). :mod:`advlab.autoattack_checks` turns
these into warnings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advlab.attacks.apgd import apgd
from advlab.attacks.base import AttackStep, BoundedAttack, eval_mode
from advlab.attacks.checks import check_count
from advlab.attacks.square import square_linf
from advlab.errors import AdvlabError

COMPONENTS = ("apgd_ce", "apgd_t", "square")
GRADIENT_COMPONENTS = ("apgd_ce", "apgd_t")


class AutoAttack(BoundedAttack):
    """Config-built AutoAttack: ``AutoAttack(eps=0.3)(model, x, y)``.

    Args:
        eps: budget or list of budgets ([0, 1] pixel units; an L2 radius for ``norm=l2``).
        norm: ``linf`` or ``l2`` (Square is L∞ only: the L2 ensemble runs the two APGDs).
        components: the sequence to run, a subset of ``apgd_ce``, ``apgd_t``, ``square`` in order.
        steps: APGD iterations (100). targets: APGD-T target classes (9). queries: Square's budget.
        seed: seeds every component.
    """

    name = "autoattack"

    def __init__(
        self,
        eps: float | Sequence[float] = 0.3,
        norm: str = "linf",
        components: Sequence[str] = COMPONENTS,
        steps: int = 100,
        targets: int = 9,
        queries: int = 5000,
        p_init: float = 0.8,
        seed: int = 0,
        max_samples: int | None = None,
    ):
        super().__init__(eps, "pixel", True, False, "ce", 1.0, max_samples, norm=norm)
        components = list(components)
        unknown = [c for c in components if c not in COMPONENTS]
        if unknown or not components:
            raise AdvlabError(
                f"unknown AutoAttack component {unknown[0] if unknown else None!r}: use {', '.join(COMPONENTS)}"
            )
        if self.norm == "l2" and "square" in components:
            components.remove("square")  # Square here is L∞ only
        self.components = components
        self.steps = check_count(steps, "steps", 100)
        self.targets = check_count(targets, "targets", 9)
        self.queries = check_count(queries, "queries", 5000)
        self.p_init = float(p_init)
        self.seed = int(seed)

    def _component(self, name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
        if name in ("apgd_ce", "apgd_t"):
            # APGD-CE untargeted, APGD-T with the targeted DLR loss against the top classes
            targeted = name == "apgd_t"
            return apgd(
                model,
                x,
                y,
                eps,
                norm=self.norm,
                loss="dlr" if targeted else "ce",
                steps=self.steps,
                targets=self.targets if targeted else 0,
                seed=self.seed,
            )
        x_adv, fooled, _ = square_linf(model, x, y, eps, queries=self.queries, p_init=self.p_init, seed=self.seed)
        return x_adv, fooled, None

    def strength(self, eps: float | None) -> int | None:
        """Gradient steps per image the two APGD runs may take (Square takes none): the masking
        check then flags any PGD with fewer steps that leaves lower accuracy."""
        return self.steps * (("apgd_ce" in self.components) + self.targets * ("apgd_t" in self.components)) or None

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> AttackStep:
        x, y = x.detach(), y.detach()
        extras: dict[str, torch.Tensor] = {}
        zero_grad = None
        with eval_mode(model), torch.no_grad():
            logits = model(x)
            again = model(x)
            extras["randomized_share"] = (logits - again).flatten(1).abs().amax(dim=1) > 1e-5 * (
                1 + logits.abs().amax()
            )
            rows = logits.float().sum(dim=1)
            extras["probability_output_share"] = (logits.amin(dim=1) >= 0) & ((rows - 1).abs() < 1e-4)
            robust = logits.argmax(1) == y
        x_adv = x.clone()
        before_square = None
        with eval_mode(model):
            for name in self.components:
                if name == "square":
                    before_square = robust.clone()
                todo = robust.nonzero().flatten()
                if len(todo):
                    found, _, zeros = self._component(name, model, x[todo], y[todo], eps)
                    found = self._within_budget(found, x[todo], eps)
                    with torch.no_grad():  # count only what the model really misclassifies
                        broken = model(found).argmax(1) != y[todo]
                    x_adv[todo[broken]] = found[broken]
                    robust[todo[broken]] = False
                    if zeros is not None and zero_grad is None:
                        zero_grad = torch.zeros_like(robust)
                        zero_grad[todo] = zeros
                extras[f"{name}_acc"] = robust.clone()
        if before_square is not None:
            extras["square_only_share"] = before_square & ~robust
        return AttackStep(eps, x_adv, zero_grad=zero_grad, extras=extras)

    def _within_budget(self, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        """Every component already projects; this guards the guarantee against rounding."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-eps, eps)
        else:
            norms = delta.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
            delta = delta * (eps / norms.clamp_min(1e-12)).clamp(max=1.0)
        return (x + delta).clamp(0.0, 1.0)

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "loss": None,
            "temperature": None,
            "norm": self.norm,
            "components": "+".join(self.components),
            "steps": self.steps,
            "targets": self.targets,
            "queries": self.queries if "square" in self.components else None,
            "seed": self.seed,
        }
