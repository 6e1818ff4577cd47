"""Adversarial training, the plain-PyTorch parts: the inner maximisation and the outer loss.

Methods (``method=``):

``pgd``      Madry et al. (2018): PGD-k on the cross-entropy from a uniform random start in the
             L∞ ball; the model is trained on the PGD point only.
``trades``   Zhang et al. (2019): ``CE(f(x), y) + β · KL(f(x) ‖ f(x'))`` where ``x'`` maximises the
             KL term by PGD-k from ``x + 0.001·N(0, 1)``.
``fgsm_rs``  Wong et al. (2020): one FGSM step of ``α = 1.25 ε`` from a uniform random start,
             projected back onto the ε ball.
``n_fgsm``   de Jorge et al. (2022): noise ``U(−kε, kε)`` (k = 2), one step of ``α = ε``, *no*
             projection (only the [0, 1] clip): larger noise instead of a clipped step is what
             avoids catastrophic overfitting at large ε.

The inner maximisation runs with the model in eval mode (dropout off, batch-norm statistics
frozen; modes restored after) and asks autograd for the input gradient only, so nothing of the
attack reaches the parameters' ``.grad``: the outer loss is the only thing that trains them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import check_count, eval_mode, require_gradients
from advlab.errors import AdvlabError

METHODS = ("pgd", "trades", "fgsm_rs", "n_fgsm")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise AdvlabError(f"unknown adversarial training method {method!r}: use one of {', '.join(METHODS)}")
    return method


def check_eps(eps: float, what: str = "defense.eps") -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise AdvlabError(f"{what} must be a number in [0, 1], got {eps!r}: e.g. {what}=0.3") from None
    if not 0.0 <= value <= 1.0:
        raise AdvlabError(f"{what} must be in [0, 1] (pixel units), got {eps}: e.g. {what}=0.3")
    return value


def _uniform(like: torch.Tensor, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    noise = torch.rand(like.shape, generator=generator, dtype=like.dtype)
    return (noise * (high - low) + low).to(like.device)


def _grad(model: nn.Module, x: torch.Tensor, objective) -> torch.Tensor:
    """∇x of ``objective(logits).sum()``; parameters get no gradient (autograd.grad on x only)."""
    x_var = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(objective(model(x_var)).sum(), x_var)
    return grad.detach()


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def inner_max(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The training-time adversarial images for ``method`` at L∞ budget ``eps`` (detached).

    ``steps``/``step_size`` apply to ``pgd`` and ``trades`` (step ``None``: ``2.5·eps/steps``);
    the single-step methods use their papers' step and noise.
    """
    check_method(method)
    require_gradients()
    x = x.detach()
    if eps == 0:
        return x.clone()
    steps = check_count(steps, "defense.steps", 10)
    step = float(step_size) if step_size is not None else 2.5 * eps / steps
    with eval_mode(model):
        if method == "fgsm_rs":
            start = (x + _uniform(x, -eps, eps, generator)).clamp(0.0, 1.0)
            grad = _grad(model, start, lambda z: F.cross_entropy(z, y, reduction="none"))
            return _project(start + 1.25 * eps * grad.sign(), x, eps).detach()
        if method == "n_fgsm":
            start = (x + _uniform(x, -2 * eps, 2 * eps, generator)).clamp(0.0, 1.0)
            grad = _grad(model, start, lambda z: F.cross_entropy(z, y, reduction="none"))
            return (start + eps * grad.sign()).clamp(0.0, 1.0).detach()
        if method == "pgd":
            x_adv = (x + _uniform(x, -eps, eps, generator)).clamp(0.0, 1.0)

            def objective(z: torch.Tensor) -> torch.Tensor:
                return F.cross_entropy(z, y, reduction="none")

        else:  # trades: climb KL(p(x) ‖ p(x')) from a tiny Gaussian start
            with torch.no_grad():
                clean_log_p = F.log_softmax(model(x).float(), dim=1)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x_adv = (x + 0.001 * noise).clamp(0.0, 1.0)

            def objective(z: torch.Tensor) -> torch.Tensor:
                return trades_kl(clean_log_p, z)

        for _ in range(steps):
            grad = _grad(model, x_adv, objective)
            x_adv = _project(x_adv + step * grad.sign(), x, eps)
    return x_adv.detach()


def trades_kl(clean_log_p: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(p_clean ‖ p_adv)``."""
    adv_log_p = F.log_softmax(adv_logits.float(), dim=1)
    return (clean_log_p.exp() * (clean_log_p - adv_log_p)).sum(dim=1)


def outer_loss(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    method: str,
    beta: float = 6.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss to minimise, logits on x_adv)`` with the model in whatever mode the caller set (train)."""
    adv_logits = model(x_adv)
    if method != "trades":
        return F.cross_entropy(adv_logits, y), adv_logits
    clean_logits = model(x)
    clean_log_p = F.log_softmax(clean_logits.float(), dim=1)
    loss = F.cross_entropy(clean_logits, y) + beta * trades_kl(clean_log_p, adv_logits).mean()
    return loss, adv_logits


def ramped_eps(eps: float, progress: float, ramp_epochs: float) -> float:
    """ε grown linearly from 0 over the first ``ramp_epochs`` epochs (``progress`` in epochs)."""
    if ramp_epochs <= 0:
        return eps
    return eps * min(1.0, max(0.0, progress) / ramp_epochs)


class AdversarialTraining:
    """What an adversarial-training run is, for ``results.json`` and the Lightning module."""

    name = "adversarial_training"

    def __init__(
        self,
        method: str = "pgd",
        eps: float = 0.3,
        steps: int = 10,
        step_size: float | None = None,
        beta: float = 6.0,
        ramp_epochs: float = 0.0,
    ):
        self.method = check_method(method)
        self.eps = check_eps(eps)
        self.steps = check_count(steps, "defense.steps", 10)
        if step_size is not None and not float(step_size) > 0:
            raise AdvlabError(f"defense.step_size must be > 0, got {step_size}: e.g. 0.01, or null for 2.5·eps/steps")
        self.step_size = None if step_size is None else float(step_size)
        if not float(beta) >= 0:
            raise AdvlabError(f"defense.beta must be >= 0, got {beta}: TRADES uses 6 (1 to 6)")
        self.beta = float(beta)
        if not float(ramp_epochs) >= 0:
            raise AdvlabError(f"defense.ramp_epochs must be >= 0, got {ramp_epochs}: 0 turns the ramp off")
        self.ramp_epochs = float(ramp_epochs)

    def adversarial(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        progress: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        eps = ramped_eps(self.eps, progress, self.ramp_epochs)
        return inner_max(model, x, y, self.method, eps, self.steps, self.step_size, generator)

    def loss(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor):
        return outer_loss(model, x, x_adv, y, self.method, self.beta)

    def describe(self) -> dict[str, object]:
        single = self.method in ("fgsm_rs", "n_fgsm")
        return {
            "defense": self.name,
            "method": self.method,
            "eps": self.eps,
            "steps": 1 if single else self.steps,
            "step_size": self.step_size,
            "beta": self.beta if self.method == "trades" else None,
            "ramp_epochs": self.ramp_epochs,
        }
