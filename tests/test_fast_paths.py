"""The fast paths give the plain paths' results: PGD with eps and restarts packed into one batch
equals PGD one run at a time bit for bit, FGSM's reused eps-0 logits equal a fresh forward, bf16
autocast keeps the perturbation fp32 and agrees with fp32, and a compiled model attacks alike."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import FGSM, PGD
from advlab.errors import AdvlabError
from advlab.lit.precision import attack_precision, compile_model


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 13 * 13, 10),
    ).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(40, 1, 28, 28, generator=generator), torch.randint(0, 10, (40,), generator=generator)


@pytest.mark.parametrize("norm, eps", [("linf", [0.02, 0.05, 0.3]), ("l2", [0.3, 1.0])])
@pytest.mark.parametrize("max_batch", [80, 10_000])  # two runs per pass, and every run in one pass
def test_packed_pgd_equals_one_run_at_a_time(batch, norm, eps, max_batch):
    x, y = batch
    model = tiny_cnn()
    settings = {"eps": eps, "norm": norm, "steps": 4, "restarts": 3, "seed": 7}
    looped = list(PGD(**settings).sweep(model, x, y))
    packed = list(PGD(**settings, max_batch=max_batch).sweep(model, x, y))
    assert [s.eps for s in packed] == eps
    for a, b in zip(looped, packed):
        assert torch.equal(a.x_adv, b.x_adv)
        assert torch.equal(a.zero_grad, b.zero_grad)
    # and the budgets hold: the small eps did not borrow the large one's ball
    if norm == "linf":
        assert (packed[0].x_adv - x).abs().amax() <= eps[0] + 1e-6


def test_packed_pgd_skips_restarts_like_the_loop(batch):
    """Once every image of an eps is adversarial, later restarts do not change the result,
    whether they were packed with the first one or skipped."""
    x, y = batch
    model = tiny_cnn()
    settings = {"eps": 0.5, "steps": 5, "restarts": 4, "seed": 3}
    looped = PGD(**settings)(model, x, y)
    with torch.no_grad():
        assert model(looped).argmax(1).ne(y).all()  # the first restart already fooled all
    assert torch.equal(PGD(**settings, max_batch=10_000)(model, x, y), looped)


def test_fgsm_eps0_logits_are_the_forward(batch):
    x, y = batch
    model = tiny_cnn()
    steps = list(FGSM(eps=[0.0, 0.1]).sweep(model, x, y))
    assert steps[0].adv_logits is not None and steps[1].adv_logits is None
    with torch.no_grad():
        assert torch.allclose(steps[0].adv_logits, model(x), atol=1e-6)
    assert torch.equal(steps[0].x_adv, x)


def test_bf16_pgd_keeps_fp32_perturbation_and_agrees(batch):
    x, y = batch
    model = tiny_cnn()
    attack = PGD(eps=0.1, steps=10, random_start=False)
    exact = attack(model, x, y)
    with attack_precision("cpu", "bf16"):
        fast = attack(model, x, y)
    assert fast.dtype == torch.float32
    assert (fast - x).abs().amax() <= 0.1 + 1e-6  # projected in fp32: the ball holds exactly
    with torch.no_grad():
        agree = model(fast).argmax(1).eq(model(exact).argmax(1)).float().mean()
    assert agree >= 0.9  # 40 images: at most 4 flips (benchmarks/fast_paths.py measures it at scale)


def test_unknown_precision_is_one_line():
    with pytest.raises(AdvlabError, match="unknown precision 'fp8': use one of fp32, bf16"):
        attack_precision("cpu", "fp8")


@pytest.mark.slow
def test_compiled_model_attacks_alike(batch):
    pytest.importorskip("torch._inductor")
    x, y = batch
    model = tiny_cnn()
    attack = PGD(eps=0.1, steps=3, random_start=False)
    eager = attack(model, x, y)
    compiled = attack(compile_model(model), x, y)
    with torch.no_grad():
        assert model(compiled).argmax(1).eq(model(eager).argmax(1)).all()
    assert torch.allclose(compiled, eager, atol=2 * 0.1 / 3 * 2.5)  # at most a flipped step sign
