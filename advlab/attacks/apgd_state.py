"""APGD's step-size rule (see :mod:`advlab.attacks.apgd`): the checkpoints where the step is
reconsidered, and the per-image state that one iteration moves and a checkpoint halves or restarts."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from advlab.attacks.ball import direction, per_sample, project

MOMENTUM = 0.75  # α: weight of the new gradient step against the last move
RHO = 0.75  # condition 1: share of steps that must raise the loss between checkpoints


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_1 < w_2 < …`` (≤ steps) at which the step size is reconsidered."""
    p_prev, p = 0.0, 0.22
    points: list[int] = []
    while p <= 1.0:
        w = math.ceil(p * steps)
        if w > (points[-1] if points else 0):
            points.append(w)
        p_prev, p = p, p + max(p - p_prev - 0.03, 0.06)
    return points


def project_image(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``x_adv`` moved into the eps-ball around ``x``, then into [0, 1]."""
    return (x + project(x_adv - x, eps, norm)).clamp(0.0, 1.0)


@dataclass
class RunState:
    """Per image still running (row i is image ``idx[i]`` of the run): the iterate, the one before
    it (momentum), its loss and gradient; the best point so far, its loss and gradient; the step
    size η, how often the loss rose since the last checkpoint, and η and the best loss there."""

    x: torch.Tensor
    x_prev: torch.Tensor
    loss: torch.Tensor
    grad: torch.Tensor
    best: torch.Tensor
    loss_best: torch.Tensor
    grad_best: torch.Tensor
    eta: torch.Tensor
    rises: torch.Tensor
    eta_ck: torch.Tensor
    best_ck: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor, eps: float) -> RunState:
        eta = torch.full((len(x),), 2.0 * eps, device=x.device, dtype=x.dtype)
        rises = torch.zeros(len(x), device=x.device)
        return cls(
            x, x.clone(), loss, grad, x.clone(), loss.clone(), grad.clone(), eta, rises, eta.clone(), loss.clone()
        )

    def rows(self, keep: torch.Tensor) -> RunState:
        return RunState(*(getattr(self, field.name)[keep] for field in fields(self)))

    def proposal(self, x0: torch.Tensor, eps: float, norm: str, momentum: bool) -> torch.Tensor:
        """The next point: a projected step of length η from the iterate, mixed with the last move."""
        z = project_image(self.x + per_sample(self.eta, self.x) * direction(self.grad, norm), x0, eps, norm)
        if not momentum:
            return z
        return project_image(self.x + MOMENTUM * (z - self.x) + (1 - MOMENTUM) * (self.x - self.x_prev), x0, eps, norm)

    def advance(self, z: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """Move to ``z`` (evaluated: ``loss``, ``grad``), counting a rise and keeping the best point."""
        self.rises = self.rises + (loss > self.loss).float()
        better = loss > self.loss_best
        self.best = torch.where(per_sample(better, z), z, self.best)
        self.grad_best = torch.where(per_sample(better, z), grad, self.grad_best)
        self.loss_best = torch.where(better, loss, self.loss_best)
        self.x_prev, self.x, self.loss, self.grad = self.x, z, loss, grad

    def reconsider(self, hit: torch.Tensor, length: int) -> None:
        """At a checkpoint ``length`` steps after the last one: halve η where the loss rose too
        rarely or nothing changed, and restart those from their best point, without momentum."""
        halve = (self.rises < RHO * length) | ((self.eta_ck == self.eta) & (self.best_ck == self.loss_best))
        self.eta_ck, self.best_ck = self.eta.clone(), self.loss_best.clone()
        self.eta = torch.where(halve, self.eta / 2, self.eta)
        # the fooled test looks at the point just evaluated: a fooled image is not restarted, so
        # the iterate stays the point it must be stored at
        restart = halve & ~hit
        mask = per_sample(restart, self.x)
        self.x = torch.where(mask, self.best, self.x)
        self.x_prev = torch.where(mask, self.x, self.x_prev)
        self.grad = torch.where(mask, self.grad_best, self.grad)
        self.loss = torch.where(restart, self.loss_best, self.loss)
        self.rises = torch.zeros_like(self.rises)
