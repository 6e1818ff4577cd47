"""Projected Gradient Descent (Madry et al., 2018), L∞ or L2.

Each step moves by ``step_size`` along the steepest-ascent direction of the attack loss for the
norm (``sign(∇)`` for L∞, ``∇ / ‖∇‖₂`` for L2), projects back onto the eps-ball around the clean
image, and clips to [0, 1]. ``restarts`` runs the whole attack again from new random starts and
keeps, per sample, the first adversarial found (else the iterate with the highest loss).

With ``steps=1``, ``random_start=False`` and ``step_size=eps`` (L∞) one step is exactly FGSM.

Several eps and restarts can run as one batched computation (``max_batch``: images per
forward/backward): the runs are packed restart by restart, each copy of the batch with its own
budget, and folded in the same order as one at a time, so the result is the same; a restart is
still skipped once every image of its eps is adversarial, unless it was already in the pack.

The iterate lives in the unit eps is stated in: for ``eps_unit='normalized'`` a step of ``u`` in
normalized space is a step of ``u · std`` in pixels (see :func:`pixel_budget`), so the ball, the
projection and the step are those of the normalized image, for L∞ and L2 alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from advlab.attacks.ball import direction, per_sample, project, random_start
from advlab.attacks.base import AttackStep, BoundedAttack, eval_mode, input_gradient, pixel_budget, zero_gradient_mask
from advlab.attacks.checks import check_count
from advlab.attacks.losses import attack_loss
from advlab.errors import AdvlabError, warn_caller


class PGD(BoundedAttack):
    """Config-built PGD: ``PGD(eps=0.3, steps=40, step_size=0.01)(model, x, y)``.

    Args:
        eps: budget or list of budgets (radius of the L∞ or L2 ball); each eps is its own attack.
        norm: ``linf`` or ``l2``.
        steps: gradient steps per restart (>= 1).
        step_size: step length in eps units; ``None`` (the default) follows eps and steps:
            ``2.5 · eps / steps`` (Madry et al.), so the iterate can cross the ball whatever the
            settings. A fixed step with ``steps · step_size < eps`` cannot reach the ball's edge
            (weaker than FGSM): it warns, and the diagnostics do not compare it with other attacks.
        random_start: start from a uniform random point of the ball instead of the clean image.
        restarts: independent runs (>= 1); per sample the best one is kept.
        seed: seeds the random starts, so a run is reproducible.
        eps_unit, clamp, targeted, loss, temperature: as for :class:`advlab.attacks.FGSM`.
        max_samples: evaluate this attack on the first N test images only (``None``: all), for
            budget-limited runs; the result rows state their ``n``.
        max_batch: pack several (eps, restart) runs into one forward/backward of up to this many
            images (at least one run); ``None`` runs them one at a time.
    """

    name = "pgd"

    def __init__(
        self,
        eps: float | Sequence[float] = 0.3,
        norm: str = "linf",
        steps: int = 40,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        seed: int = 0,
        eps_unit: str = "pixel",
        clamp: bool = True,
        targeted: bool = False,
        loss: str = "ce",
        temperature: float = 1.0,
        max_samples: int | None = None,
        max_batch: int | None = None,
    ):
        super().__init__(eps, eps_unit, clamp, targeted, loss, temperature, max_samples, norm=norm)
        self.max_batch = None if max_batch is None else check_count(max_batch, "max_batch", 4096)
        self.steps = check_count(steps, "steps")
        self.restarts = check_count(restarts, "restarts", 5)
        if step_size is not None and not float(step_size) >= 0:
            raise AdvlabError(
                f"step_size must be >= 0, got {step_size}: e.g. step_size=0.01, or null for 2.5·eps/steps"
            )
        self.step_size = None if step_size is None else float(step_size)
        self.random_start = bool(random_start)
        self.seed = int(seed)
        short = [eps for eps in self.eps_values if not self.crosses_ball(eps)]
        if short:
            warn_caller(
                f"PGD: {self.steps} steps of {self.step_size:g} cannot cross the eps={max(short):g} ball "
                f"(steps · step_size < eps), so it is weaker than it looks: use step_size=null "
                f"(2.5·eps/steps) or more steps"
            )

    def step_for(self, eps: float) -> float:
        return self.step_size if self.step_size is not None else 2.5 * eps / self.steps

    def crosses_ball(self, eps: float) -> bool:
        """Whether ``steps`` steps can reach the edge of the eps-ball from its centre."""
        return self.steps * self.step_for(eps) >= eps - 1e-9

    def strength(self, eps: float | None) -> int | None:
        """steps × restarts, for a PGD whose steps can cross the ball (a shorter one can be
        weaker than FGSM without any masking, so it is not compared)."""
        if eps is None or not self.crosses_ball(eps):
            return None
        return self.steps * (self.restarts if self.random_start else 1)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> AttackStep:
        return self._attack(model, x, y, [eps])[0]

    def sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[AttackStep]:
        yield from self._attack(model, x, y, self.eps_values)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, budgets: Sequence[float]) -> list[AttackStep]:
        """Every (eps, restart) run, packed ``max_batch`` images at a time in restart-major order,
        then folded per eps in restart order exactly as a loop over restarts would."""
        x = x.detach()
        n = len(x)
        # scale maps the iterate u (eps units) to pixels: 1 for pixel units, std per channel else.
        scale = pixel_budget(model, 1.0, self.eps_unit, x)
        # one generator per eps, seeded alike: the starts do not depend on the packing
        generators = [torch.Generator().manual_seed(self.seed) for _ in budgets]
        # without a random start every restart would repeat the first one exactly
        restarts = self.restarts if self.random_start else 1
        pending = [(r, i) for r in range(restarts) for i in range(len(budgets))]
        per_pass = 1 if self.max_batch is None else max(1, self.max_batch // max(n, 1))
        best: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [None] * len(budgets)
        zero_grad: list[torch.Tensor | None] = [None] * len(budgets)
        done: set[int] = set()
        with eval_mode(model):
            while pending:
                pack = [run for run in pending[:per_pass] if run[1] not in done]
                pending = pending[per_pass:]
                if not pack:
                    continue
                starts = [self._start(x, budgets[i], generators[i], scale) for _, i in pack]
                x_adv, zero = self._run(model, x, y, starts, [budgets[i] for _, i in pack], scale)
                for j, (r, i) in enumerate(pack):
                    if i in done:  # an earlier restart in this pack already fooled every image
                        continue
                    rows = slice(j * n, (j + 1) * n)
                    if r == 0:
                        zero_grad[i] = zero[rows]
                    if restarts == 1:  # nothing to choose between: skip the selecting forward
                        best[i] = (x_adv[rows], torch.empty(0), torch.ones(n, dtype=torch.bool))
                        continue
                    kept = self._keep_best(model, x_adv[rows], y, *(best[i] or (None, None, None)))
                    best[i] = kept
                    if bool(kept[2].all()):
                        done.add(i)
        return [AttackStep(eps, run[0], zero_grad=mask) for eps, run, mask in zip(budgets, best, zero_grad) if run]

    def _start(
        self, x: torch.Tensor, eps: float, generator: torch.Generator, scale: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, image)`` where one run starts: a random point of the ball (or 0), clipped to [0, 1]."""
        u = random_start(x, eps, self.norm, generator) if self.random_start else torch.zeros_like(x)
        x_adv = self._to_image(x, u, scale)
        # the clip to [0, 1] may shorten u: start from where the image really is
        return ((x_adv - x) / scale if self.clamp else u), x_adv

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        starts: list[tuple[torch.Tensor, torch.Tensor]],
        budgets: list[float],
        scale: torch.Tensor | float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps`` PGD steps for the runs stacked along the batch (one copy of x per run, each
        with its own eps and step); returns the last iterates and the first gradients' zero mask."""
        copies = len(starts)
        x_all = x.repeat(copies, *([1] * (x.dim() - 1))) if copies > 1 else x
        y_all = y.repeat(copies) if copies > 1 else y
        eps = per_sample(torch.tensor(budgets, dtype=x.dtype, device=x.device).repeat_interleave(len(x)), x)
        step = torch.tensor([self.step_for(e) for e in budgets], dtype=x.dtype, device=x.device)
        step = per_sample(step.repeat_interleave(len(x)), x)
        u = torch.cat([u for u, _ in starts]) if copies > 1 else starts[0][0]
        x_adv = torch.cat([image for _, image in starts]) if copies > 1 else starts[0][1]
        zero = None
        for _ in range(self.steps):
            grad, _ = input_gradient(model, x_adv, y_all, self.loss, self.temperature, self.targeted)
            if zero is None:
                zero = zero_gradient_mask(grad)
            grad_u = grad * scale  # chain rule: the iterate is u, the image x + u·scale
            u = project(u + step * direction(grad_u, self.norm), eps, self.norm)
            x_adv = self._to_image(x_all, u, scale)
            # the clip to [0, 1] may shorten u: carry on from where the image really is
            u = (x_adv - x_all) / scale if self.clamp else u
        assert zero is not None  # steps >= 1
        return x_adv, zero

    def _to_image(self, x: torch.Tensor, u: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        x_adv = x + (u if isinstance(scale, float) and scale == 1.0 else u * scale)
        return x_adv.clamp(0.0, 1.0) if self.clamp else x_adv

    @torch.no_grad()
    def _keep_best(
        self,
        model: nn.Module,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        best: torch.Tensor | None,
        best_loss: torch.Tensor | None,
        best_hit: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample: a restart that fools the model wins over one that does not; between two of
        the same kind the higher loss wins (ties keep the earlier one)."""
        logits = model(x_adv)
        loss = attack_loss(logits, y, self.loss, self.temperature, self.targeted)
        hit = logits.argmax(1).eq(y) if self.targeted else logits.argmax(1).ne(y)
        if best is None or best_loss is None or best_hit is None:
            return x_adv, loss, hit
        better = (hit & ~best_hit) | ((hit == best_hit) & (loss > best_loss))
        return torch.where(per_sample(better, x_adv), x_adv, best), torch.where(better, loss, best_loss), hit | best_hit

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "steps": self.steps,
            "step_size": self.step_size,
            "random_start": self.random_start,
            "restarts": self.restarts,
        }


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | Sequence[float], **settings: Any
) -> torch.Tensor | list[torch.Tensor]:
    """Functional PGD, ``PGD(eps, **settings)(model, x, y)`` (settings and defaults: :class:`PGD`'s):
    a tensor for one eps, a list of tensors for a list of eps."""
    return PGD(eps, **settings)(model, x, y)
