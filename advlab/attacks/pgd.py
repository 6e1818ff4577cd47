"""Projected Gradient Descent (Madry et al., 2018), L∞ or L2.

Each step moves by ``step_size`` along the steepest-ascent direction of the attack loss for the
norm (``sign(∇)`` for L∞, ``∇ / ‖∇‖₂`` for L2), projects back onto the eps-ball around the clean
image, and clips to [0, 1]. ``restarts`` runs the whole attack again from new random starts and
keeps, per sample, the first adversarial found (else the iterate with the highest loss).

With ``steps=1``, ``random_start=False`` and ``step_size=eps`` (L∞) one step is exactly FGSM.

The iterate lives in the unit eps is stated in: for ``eps_unit='normalized'`` a step of ``u`` in
normalized space is a step of ``u · std`` in pixels (see :func:`pixel_budget`), so the ball, the
projection and the step are those of the normalized image, for L∞ and L2 alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from advlab.attacks.base import AttackStep, BoundedAttack, eval_mode, input_gradient, pixel_budget, zero_gradient_mask
from advlab.attacks.checks import check_count
from advlab.attacks.losses import attack_loss
from advlab.errors import AdvlabError


def _per_sample_l2(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample, shaped to broadcast against the batch."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _project(u: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return u.clamp(-eps, eps)
    length = _per_sample_l2(u)
    return u * (eps / length.clamp_min(1e-12)).clamp(max=1.0)


def _random_start(like: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """Uniform in the L∞ box, or uniform in the L2 ball (Gaussian direction, radius eps·U^(1/d))."""
    shape = like.shape
    if norm == "linf":
        noise = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
        return (noise * eps).to(like)
    direction = torch.randn(shape, generator=generator, dtype=torch.float64)
    direction = direction / _per_sample_l2(direction).clamp_min(1e-12)
    dims = like[0].numel()
    radius = torch.rand(shape[0], generator=generator, dtype=torch.float64) ** (1.0 / dims)
    return (direction * eps * radius.view(-1, *([1] * (len(shape) - 1)))).to(like)


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
    ):
        super().__init__(eps, eps_unit, clamp, targeted, loss, temperature, max_samples, norm=norm)
        self.steps = check_count(steps, "steps")
        self.restarts = check_count(restarts, "restarts", 5)
        if step_size is not None and not float(step_size) >= 0:
            raise AdvlabError(f"step_size must be >= 0, got {step_size}: e.g. step_size=0.01, or null for 2.5·eps/steps")
        self.step_size = None if step_size is None else float(step_size)
        self.random_start = bool(random_start)
        self.seed = int(seed)
        short = [eps for eps in self.eps_values if not self.crosses_ball(eps)]
        if short:
            warnings.warn(
                f"PGD: {self.steps} steps of {self.step_size:g} cannot cross the eps={max(short):g} ball "
                f"(steps · step_size < eps), so it is weaker than it looks: use step_size=null "
                f"(2.5·eps/steps) or more steps",
                stacklevel=2,
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
        x = x.detach()
        # scale maps the iterate u (eps units) to pixels: 1 for pixel units, std per channel else.
        scale = pixel_budget(model, 1.0, self.eps_unit, x)
        step = self.step_for(eps)
        generator = torch.Generator().manual_seed(self.seed)
        best = best_loss = best_hit = None
        zero_grad = None
        with eval_mode(model):
            # without a random start every restart would repeat the first one exactly
            for _ in range(self.restarts if self.random_start else 1):
                u = _random_start(x, eps, self.norm, generator) if self.random_start else torch.zeros_like(x)
                x_adv = self._to_image(x, u, scale)
                u = (x_adv - x) / scale if self.clamp else u
                for _ in range(self.steps):
                    grad, _ = input_gradient(model, x_adv, y, self.loss, self.temperature, self.targeted)
                    if zero_grad is None:
                        zero_grad = zero_gradient_mask(grad)
                    grad_u = grad * scale  # chain rule: the iterate is u, the image x + u·scale
                    u = _project(u + step * self._direction(grad_u), eps, self.norm)
                    x_adv = self._to_image(x, u, scale)
                    # the clip to [0, 1] may shorten u: carry on from where the image really is
                    u = (x_adv - x) / scale if self.clamp else u
                best, best_loss, best_hit = self._keep_best(model, x_adv, y, best, best_loss, best_hit)
                if bool(best_hit.all()):
                    break
        return AttackStep(eps, best, zero_grad=zero_grad)

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return grad.sign()
        return grad / _per_sample_l2(grad).clamp_min(1e-12)

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
        view = better.view(-1, *([1] * (x_adv.dim() - 1)))
        return torch.where(view, x_adv, best), torch.where(better, loss, best_loss), hit | best_hit

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "steps": self.steps,
            "step_size": self.step_size,
            "random_start": self.random_start,
            "restarts": self.restarts,
        }


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | Sequence[float],
    *,
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
) -> torch.Tensor | list[torch.Tensor]:
    """Functional PGD: a tensor for one eps, a list of tensors for a list of eps."""
    attack = PGD(eps, norm, steps, step_size, random_start, restarts, seed, eps_unit, clamp, targeted, loss, temperature)
    return attack(model, x, y)
