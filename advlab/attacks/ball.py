"""The eps-ball geometry the gradient attacks share (PGD, APGD): per-sample shapes and L2
norms, the projection onto the ball, the steepest-ascent direction and the random start."""

from __future__ import annotations

import torch


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One value per sample (shape ``N``), shaped to broadcast against a batch like ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def per_sample_l2(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample, shaped to broadcast against the batch."""
    return per_sample(t.flatten(1).norm(dim=1), t)


def project(u: torch.Tensor, eps: torch.Tensor | float, norm: str) -> torch.Tensor:
    """Onto the eps-ball; ``eps`` a number or one radius per sample (shaped to broadcast)."""
    if norm == "linf":
        return torch.clamp(u, -eps, eps) if isinstance(eps, torch.Tensor) else u.clamp(-eps, eps)
    length = per_sample_l2(u)
    return u * (eps / length.clamp_min(1e-12)).clamp(max=1.0)


def direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent step of unit length in the norm: ``sign(∇)`` for L∞, ``∇ / ‖∇‖₂`` for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / per_sample_l2(grad).clamp_min(1e-12)


def random_start(like: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """Uniform in the L∞ box, or uniform in the L2 ball (Gaussian direction, radius eps·U^(1/d))."""
    shape = like.shape
    if norm == "linf":
        noise = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
        return (noise * eps).to(like)
    unit = torch.randn(shape, generator=generator, dtype=torch.float64)
    unit = unit / per_sample_l2(unit).clamp_min(1e-12)
    dims = like[0].numel()
    radius = torch.rand(shape[0], generator=generator, dtype=torch.float64) ** (1.0 / dims)
    return (unit * eps * per_sample(radius, like)).to(like)
