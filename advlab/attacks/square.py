"""Square attack, L∞ (Andriushchenko et al., ECCV 2020): random search on the model's scores.

No gradients: it only reads logits, so a defence that hides or breaks its gradients cannot fool
it. From vertical stripes of ±ε per channel, each query proposes setting one random square of
side ``s`` to ``x ± ε`` (one random sign per channel) and keeps the proposal if the logit margin
``z_y − max_{j≠y} z_j`` drops. The square's area is a share ``p`` of the image that starts at
``p_init`` and halves at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (counted on a
10 000-query scale, so the schedule stretches with the budget). An image stops as soon as it is
misclassified; no image is queried more than ``queries`` times (the first query included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from advlab.attacks.base import AttackStep, BoundedAttack, eval_mode
from advlab.attacks.checks import check_count
from advlab.attacks.losses import logit_margin
from advlab.errors import AdvlabError

HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_share(p_init: float, query: int, queries: int) -> float:
    """The share ``p`` of the image a square covers at ``query`` (1-based) out of ``queries``."""
    at = int(query / queries * 10_000)
    return p_init / 2 ** sum(at > h for h in HALVINGS)


@torch.no_grad()
def square_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    queries: int = 5000,
    p_init: float = 0.8,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_adv, fooled, queries_used)`` per image. The model must already be in eval mode."""
    generator = torch.Generator().manual_seed(int(seed))
    x = x.detach()
    n, c, h, w = x.shape

    def signs(*shape: int) -> torch.Tensor:
        return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(x)

    best = (x + eps * signs(n, c, 1, w)).clamp(0.0, 1.0)
    margin = logit_margin(model(best).float(), y)
    used = torch.ones(n, dtype=torch.long, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    for query in range(1, queries):
        active = (margin > 0).nonzero().flatten()
        if len(active) == 0:
            break
        m = len(active)
        side = max(
            1,
            min(
                h - 1,
                round(math.sqrt(square_share(p_init, query, queries) * h * w)),
            ),
        )
        top = torch.randint(0, h - side + 1, (m,), generator=generator).to(x.device).view(m, 1, 1, 1)
        left = torch.randint(0, w - side + 1, (m,), generator=generator).to(x.device).view(m, 1, 1, 1)
        window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        base, current = x[active], best[active]
        sign = signs(m, c, 1, 1)
        proposal = torch.where(window, (base + eps * sign).clamp(0.0, 1.0), current)
        # a proposal equal to the current square wastes a query: flip its signs instead
        same = ((proposal - current).abs().flatten(1).amax(dim=1) < 1e-7).view(m, 1, 1, 1)
        proposal = torch.where(window & same, (base - eps * sign).clamp(0.0, 1.0), proposal)
        new_margin = logit_margin(model(proposal).float(), y[active])
        used[active] += 1
        better = new_margin < margin[active]
        best[active[better]] = proposal[better]
        margin[active[better]] = new_margin[better]
    return best, margin <= 0, used


class Square(BoundedAttack):
    """Config-built Square attack (L∞, untargeted): ``Square(eps=0.3, queries=5000)(model, x, y)``.

    ``last_queries`` holds the queries each image used in the last call.
    """

    name = "square"

    def __init__(
        self,
        eps: float | Sequence[float] = 0.3,
        queries: int = 5000,
        p_init: float = 0.8,
        seed: int = 0,
        eps_unit: str = "pixel",
        clamp: bool = True,
        max_samples: int | None = None,
    ):
        super().__init__(eps, eps_unit, clamp, False, "margin", 1.0, max_samples, norm="linf")
        self._require_pixels()
        self.queries = check_count(queries, "queries", 5000)
        if not 0 < float(p_init) <= 1:
            raise AdvlabError(f"p_init must be in (0, 1], got {p_init}: e.g. p_init=0.8 (AutoAttack on MNIST)")
        self.p_init = float(p_init)
        self.seed = int(seed)
        self.last_queries: torch.Tensor | None = None

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> AttackStep:
        """No gradients are taken, so no zero-gradient mask: a saturated softmax cannot stop it."""
        with eval_mode(model):
            x_adv, _, self.last_queries = square_linf(
                model,
                x,
                y,
                eps,
                queries=self.queries,
                p_init=self.p_init,
                seed=self.seed,
            )
        return AttackStep(eps, x_adv)

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "temperature": None,
            "norm": "linf",
            "queries": self.queries,
            "p_init": self.p_init,
        }
