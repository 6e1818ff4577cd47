"""PGD: L∞ and L2 budgets and projection, one step = FGSM, real damage, no side effects."""

from __future__ import annotations

import pytest
import torch

from advlab.attacks import FGSM, PGD, fgsm, pgd
from advlab.attacks.ball import project
from advlab.errors import AdvlabError
from advlab.models import NormalizedClassifier


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture
def batch(test_batch):
    x, y = test_batch
    return x[:64], y[:64]


def l2(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def test_linf_budget_projection_and_damage(trained_cnn, batch):
    x, y = batch
    eps = [0.05, 0.15]
    # 6 steps of 0.05 overshoot both balls: only the projection keeps the budget
    outs = pgd(trained_cnn, x, y, eps, steps=6, step_size=0.05)
    for e, x_adv in zip(eps, outs):
        linf = (x_adv - x).abs().amax().item()
        assert linf <= e + 1e-6
        assert linf == pytest.approx(e, abs=1e-6), "the projection should reach the boundary"
        assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert accuracy(trained_cnn, outs[1], y) < accuracy(trained_cnn, x, y) - 0.3


def test_l2_budget_and_projection(trained_cnn, batch):
    x, y = batch
    eps = 1.5
    x_adv = pgd(trained_cnn, x, y, eps, norm="l2", steps=6, step_size=0.75)
    distance = l2(x_adv - x)
    assert distance.max().item() <= eps + 1e-4
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert accuracy(trained_cnn, x_adv, y) < accuracy(trained_cnn, x, y) - 0.1
    # without the [0, 1] clip the only constraint is the ball: every iterate ends on its surface
    free = pgd(trained_cnn, x, y, eps, norm="l2", steps=6, step_size=0.75, clamp=False)
    assert torch.allclose(l2(free - x), torch.full((len(x),), eps), atol=1e-4)


def test_l2_projection_keeps_interior_points():
    torch.manual_seed(0)
    u = torch.randn(5, 1, 4, 4)
    u[0] *= 1e-3  # well inside the ball
    projected = project(u, 1.0, "l2")
    assert torch.equal(projected[0], u[0])
    assert (l2(projected) <= 1.0 + 1e-6).all()
    outside = l2(u) > 1.0
    assert torch.allclose(l2(projected)[outside], torch.ones(int(outside.sum())))
    # same direction, only shortened
    cos = torch.nn.functional.cosine_similarity(projected.flatten(1), u.flatten(1))
    assert torch.allclose(cos, torch.ones(5), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"loss": "margin"}, {"temperature": 100.0}, {"clamp": False}],
)
def test_one_step_without_random_start_equals_fgsm(trained_cnn, batch, kwargs):
    x, y = batch
    eps = [0.0, 0.05, 0.3]
    one_step = [pgd(trained_cnn, x, y, e, steps=1, step_size=e, random_start=False, **kwargs) for e in eps]
    for e, a, b in zip(eps, one_step, fgsm(trained_cnn, x, y, eps, **kwargs)):
        assert torch.equal(a, b), f"eps {e}"


def test_one_step_equals_fgsm_in_normalized_units():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    model = NormalizedClassifier(net, mean=[0.5, 0.5, 0.5], std=[0.1, 0.2, 0.4])
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 5, (8,))
    a = pgd(model, x, y, 0.5, steps=1, step_size=0.5, random_start=False, eps_unit="normalized", clamp=False)
    assert torch.equal(a, fgsm(model, x, y, 0.5, eps_unit="normalized", clamp=False))
    # the ball is the normalized one: at most eps·std per channel in pixels
    b = pgd(model, x, y, 0.5, steps=5, step_size=0.3, eps_unit="normalized", clamp=False)
    step = (b - x).abs().amax(dim=(0, 2, 3))
    assert (step <= torch.tensor([0.05, 0.1, 0.2]) + 1e-6).all()


def test_iterations_beat_one_step(trained_cnn, batch):
    x, y = batch
    single = accuracy(trained_cnn, fgsm(trained_cnn, x, y, 0.1), y)
    many = accuracy(trained_cnn, pgd(trained_cnn, x, y, 0.1, steps=10, step_size=0.025), y)
    assert many < single


def test_random_start_is_seeded_and_restarts_keep_the_best(trained_cnn, batch):
    x, y = batch
    a = pgd(trained_cnn, x, y, 0.1, steps=2, step_size=0.02, seed=3)
    assert torch.equal(a, pgd(trained_cnn, x, y, 0.1, steps=2, step_size=0.02, seed=3))
    assert not torch.equal(a, pgd(trained_cnn, x, y, 0.1, steps=2, step_size=0.02, seed=4))
    one = pgd(trained_cnn, x, y, 0.1, steps=2, step_size=0.02, restarts=1, seed=3)
    three = pgd(trained_cnn, x, y, 0.1, steps=2, step_size=0.02, restarts=3, seed=3)
    with torch.no_grad():
        fooled_one = trained_cnn(one).argmax(1) != y
        fooled_three = trained_cnn(three).argmax(1) != y
    assert not (fooled_one & ~fooled_three).any(), "a restart must never lose an adversarial already found"
    assert (three - x).abs().amax() <= 0.1 + 1e-6


def test_targeted_moves_towards_target(trained_cnn, batch):
    x, y = batch
    target = (y + 1) % 10
    x_adv = pgd(trained_cnn, x, target, 0.2, steps=10, step_size=0.04, targeted=True)
    assert accuracy(trained_cnn, x_adv, target) > accuracy(trained_cnn, x, target) + 0.3


def test_no_side_effects(trained_cnn, batch):
    x, y = batch
    x_before = x.clone()
    params = list(trained_cnn.parameters())
    params[0].grad = torch.full_like(params[0], 7.0)
    trained_cnn.train()
    trained_cnn.classifier[3].eval()
    try:
        for norm in ("linf", "l2"):
            PGD(eps=[0.1], norm=norm, steps=2, restarts=2)(trained_cnn, x, y)
        assert torch.equal(x, x_before)
        assert torch.equal(params[0].grad, torch.full_like(params[0], 7.0))
        assert all(p.grad is None for p in params[1:])
        assert trained_cnn.training and not trained_cnn.classifier[3].training
    finally:
        params[0].grad = None
        trained_cnn.eval()


def test_zero_gradient_mask_is_recorded(trained_cnn, batch):
    x, y = batch
    (step,) = PGD(eps=0.1, steps=1).sweep(trained_cnn, x, y)
    assert step.eps == 0.1 and step.success is None
    assert step.zero_grad is not None and step.zero_grad.shape == (len(x),)
    assert not step.zero_grad.any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"restarts": 0}, "restarts must be an integer >= 1, got 0"),
        ({"loss": "hinge"}, "unknown attack loss 'hinge'"),
        ({"norm": "l1"}, "unknown norm 'l1'"),
        ({"step_size": -0.1}, "step_size must be >= 0, got -0.1"),
        ({"temperature": 0}, "temperature must be > 0"),
        ({"eps": -1}, "eps must be >= 0, got -1"),
    ],
)
def test_bad_arguments_raise_one_line(kwargs, message):
    with pytest.raises(AdvlabError, match=message) as info:
        PGD(**kwargs)
    assert "\n" not in str(info.value)


def test_settings_state_what_a_table_needs():
    settings = PGD(eps=[0.3], steps=40, step_size=0.01, loss="margin").settings()
    assert settings["attack"] == "pgd" and settings["steps"] == 40 and settings["loss"] == "margin"
    assert settings["norm"] == "linf" and settings["random_start"] is True
    assert isinstance(FGSM(eps=0.1).settings()["temperature"], float)
