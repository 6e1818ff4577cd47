"""Auto-PGD (Croce & Hein, ICML 2020): PGD without a step size to tune.

Per image, from a random start in the eps ball:

- the first step has length ``η = 2ε``; later steps mix the projected gradient step ``z`` with the
  last move: ``x ← P(x + α(z − x) + (1 − α)(x − x_prev))``, ``α = 0.75`` (momentum);
- at checkpoints ``w_j = ⌈p_j N⌉`` (``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``) the step is halved and the iterate restarts
  from the best point found so far when either (1) the loss rose in fewer than ``ρ = 0.75`` of the
  steps since the last checkpoint, or (2) neither the step nor the best loss changed since then;
- the best point (highest loss) is kept per image, and the first misclassified point found wins.

Losses: ``ce`` and the difference-of-logits ratio ``dlr`` (invariant to shifting and scaling the
logits, so a saturated softmax cannot hide the gradient). ``targets = k > 0`` is APGD-T: one run
against each of the k classes ranked just below the true one by the clean logits, with the
targeted DLR (or CE) loss; an image counts as broken as soon as it is misclassified.

Images already misclassified drop out of the batch (only the robust ones keep costing
gradients). L∞ and L2, ``restarts`` runs from fresh random starts, seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advlab.attacks.apgd_state import RunState, checkpoints, project_image
from advlab.attacks.ball import random_start
from advlab.attacks.base import AttackStep, BoundedAttack, eval_mode, require_gradients, zero_gradient_mask
from advlab.attacks.checks import check_count, check_norm
from advlab.attacks.losses import apgd_loss, check_apgd_loss
from advlab.errors import AdvlabError


def apgd_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    loss: str = "ce",
    steps: int = 100,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run, model already in eval mode. Returns ``(x_adv, fooled, zero_grad)``: per image
    the first misclassified point found, else the highest-loss point; whether it is misclassified;
    whether the first input gradient was exactly zero."""
    x = x.detach()
    generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def loss_and_grad(points: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        var = points.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(var)
            values = apgd_loss(logits, y[idx], loss, None if target is None else target[idx])
            (grad,) = torch.autograd.grad(values.sum(), var)
        return values.detach(), grad.detach(), logits.detach().argmax(1) != y[idx]

    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    idx = torch.arange(len(x), device=x.device)
    x_start = project_image(x + random_start(x, eps, norm, generator), x, eps, norm)
    loss_start, grad, hit = loss_and_grad(x_start, idx)
    zero_grad = zero_gradient_mask(grad)
    out = x_start.clone()
    state = RunState.start(x_start, loss_start, grad, eps)
    marks, last_mark = set(checkpoints(steps)), 0
    for k in range(steps + 1):
        # images misclassified at the point just evaluated are done: keep that point, drop them
        if bool(hit.any()):
            out[idx[hit]] = state.x[hit]
            fooled[idx[hit]] = True
            idx, state = idx[~hit], state.rows(~hit)
        if len(idx) == 0 or k == steps:
            break
        z = state.proposal(x[idx], eps, norm, momentum=k > 0)
        loss_z, grad_z, hit = loss_and_grad(z, idx)
        state.advance(z, loss_z, grad_z)
        if k + 1 in marks:
            state.reconsider(hit, k + 1 - last_mark)
            last_mark = k + 1
    if len(idx):
        out[idx] = state.best  # the highest-loss point of the images never misclassified
    return out, fooled, zero_grad


def top_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The classes ranked 2nd … (k+1)-th by the clean logits, excluding the true class: APGD-T's targets."""
    with torch.no_grad():
        logits = model(x).float()
    ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    k = min(k, logits.shape[1] - 1)
    return [ranked[:, i] for i in range(k)]


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    loss: str = "ce",
    steps: int = 100,
    restarts: int = 1,
    targets: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """APGD (``targets=0``) or APGD-T (``targets=k``) with restarts, each run only on the images
    not yet broken. Returns ``(x_adv, fooled, zero_grad)`` like :func:`apgd_run`."""
    require_gradients()
    norm = check_norm(norm)
    loss = check_apgd_loss(loss)
    generator = torch.Generator().manual_seed(int(seed))
    x, y = x.detach(), y.detach()
    with eval_mode(model):
        classes = model(x[:1]).shape[1] if len(x) else 10
        if loss == "dlr" and classes < (4 if targets else 3):
            raise AdvlabError(
                f"the DLR loss needs at least {4 if targets else 3} classes, the model has {classes}: use loss=ce"
            )
        out, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        zero_grad = None
        aims: list[torch.Tensor | None] = list(top_targets(model, x, y, targets)) if targets else [None]
        for aim in aims:
            for _ in range(restarts):
                todo = (~fooled).nonzero().flatten()
                if len(todo) == 0:
                    break
                found, hit, zeros = apgd_run(
                    model,
                    x[todo],
                    y[todo],
                    eps,
                    norm=norm,
                    loss=loss,
                    steps=steps,
                    target=None if aim is None else aim[todo],
                    generator=generator,
                )
                if zero_grad is None:
                    zero_grad = torch.zeros(len(x), dtype=torch.bool, device=x.device)
                    zero_grad[todo] = zeros
                # unbroken images keep the highest-loss point of their first run; broken ones their adversarial
                update = hit | (out[todo] == x[todo]).flatten(1).all(dim=1)
                out[todo[update]] = found[update]
                fooled[todo[hit]] = True
    if zero_grad is None:
        zero_grad = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    return out, fooled, zero_grad


class APGD(BoundedAttack):
    """Config-built APGD: ``APGD(eps=0.3, loss="dlr", targets=9)(model, x, y)`` is APGD-T.

    Args:
        eps: budget or list of budgets ([0, 1] pixel units; an L2 radius for ``norm=l2``).
        norm: ``linf`` or ``l2``.
        loss: ``ce`` or ``dlr``.
        steps: iterations per run (AutoAttack: 100).
        restarts: runs per target (fresh random starts), each on the images not yet broken.
        targets: 0 for untargeted; k for APGD-T against the top-k other classes (9 for 10 classes).
            ``y`` is always the true label: the attack aims at misclassification either way.
        seed: seeds the random starts.
        max_samples: attack the first N test images only.
    """

    name = "apgd"

    def __init__(
        self,
        eps: float | Sequence[float] = 0.3,
        norm: str = "linf",
        loss: str = "ce",
        steps: int = 100,
        restarts: int = 1,
        targets: int = 0,
        seed: int = 0,
        eps_unit: str = "pixel",
        clamp: bool = True,
        max_samples: int | None = None,
    ):
        super().__init__(eps, eps_unit, clamp, False, "ce", 1.0, max_samples, norm=norm)
        self._require_pixels()
        self.loss = check_apgd_loss(loss)
        self.steps = check_count(steps, "steps", 100)
        self.restarts = check_count(restarts, "restarts", 1)
        if int(targets) < 0 or int(targets) != targets:
            raise AdvlabError(f"targets must be an integer >= 0, got {targets!r}: 0 (untargeted) or 9 (APGD-T)")
        self.targets = int(targets)
        self.seed = int(seed)

    def strength(self, eps: float | None) -> int | None:
        """Gradient steps per image: steps × restarts, for each target of APGD-T."""
        return self.steps * self.restarts * max(1, self.targets)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> AttackStep:
        x_adv, _, zero_grad = apgd(
            model,
            x,
            y,
            eps,
            norm=self.norm,
            loss=self.loss,
            steps=self.steps,
            restarts=self.restarts,
            targets=self.targets,
            seed=self.seed,
        )
        return AttackStep(eps, x_adv, zero_grad=zero_grad)

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "temperature": None,
            "norm": self.norm,
            "steps": self.steps,
            "restarts": self.restarts,
            "targets": self.targets,
            "seed": self.seed,
        }
