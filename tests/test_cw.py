"""Carlini–Wagner L2: finds adversarials closer than FGSM's, honest bookkeeping, κ, no side effects."""

from __future__ import annotations

import pytest
import torch

from advlab.attacks import CarliniWagnerL2, cw, fgsm
from advlab.attacks.losses import margin_gain
from advlab.errors import AdvlabError

# Few steps for a fast test; enough on the briefly trained fixture CNN (~97 % success).
QUICK = {"binary_search_steps": 3, "steps": 30, "lr": 0.1, "initial_const": 1.0}


@pytest.fixture
def batch(test_batch):
    x, y = test_batch
    return x[:32], y[:32]


@pytest.fixture(scope="module")
def plain_cw(trained_cnn, mnist_test):
    """One CW run shared by the tests that only read it: ``(x, y, step, x_adv)`` (``step``: the
    sweep's typed result, with per-sample success and L2)."""
    x, y = mnist_test[0][:32].clone(), mnist_test[1][:32].clone()
    (step,) = CarliniWagnerL2(**QUICK).sweep(trained_cnn, x, y)
    return x, y, step, step.x_adv


def predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def l2(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def test_finds_adversarials_closer_than_a_successful_fgsm(trained_cnn, plain_cw):
    x, y, _, x_cw = plain_cw
    correct = predictions(trained_cnn, x) == y
    fooled_cw = predictions(trained_cnn, x_cw) != y
    assert fooled_cw[correct].float().mean() >= 0.9, "CW should fool almost every correctly classified image"

    x_fgsm = fgsm(trained_cnn, x, y, 0.25)
    fooled_fgsm = (predictions(trained_cnn, x_fgsm) != y) & correct
    both = fooled_fgsm & fooled_cw
    assert both.sum() >= 10, "FGSM at 0.25 should fool a good share of this batch"
    d_cw, d_fgsm = l2(x_cw - x)[both], l2(x_fgsm - x)[both]
    assert (d_cw < d_fgsm).float().mean() >= 0.9
    assert d_cw.median() < 0.7 * d_fgsm.median()


def test_reports_per_sample_success_and_l2_honestly(trained_cnn, batch):
    x, y = batch
    attack = CarliniWagnerL2(binary_search_steps=2, steps=15, lr=0.1, initial_const=0.05)
    (step,) = attack.sweep(trained_cnn, x, y)
    x_adv, success, distance = step.x_adv, step.success, step.l2
    assert step.eps is None and step.zero_grad is None
    assert torch.equal(attack(trained_cnn, x, y), x_adv)  # the call is the sweep's one step
    assert success.shape == distance.shape == (len(x),)
    assert success.any() and (~success).any(), "these settings are chosen to succeed on some images only"
    # successes really are misclassified, at the distance reported
    assert (predictions(trained_cnn, x_adv)[success] != y[success]).all()
    assert torch.allclose(l2(x_adv - x)[success], distance[success], atol=1e-5)
    # failures give back the clean image and an infinite distance
    assert torch.equal(x_adv[~success], x[~success])
    assert torch.isinf(distance[~success]).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_confidence_buys_margin_with_distance(trained_cnn, plain_cw):
    x, y, plain, _ = plain_cw
    (strict,) = CarliniWagnerL2(confidence=1.0, **QUICK).sweep(trained_cnn, x, y)
    x_strict = strict.x_adv
    with torch.no_grad():
        gain = margin_gain(trained_cnn(x_strict), y)
        plain_gain = margin_gain(trained_cnn(plain_cw[3]), y)
    both = plain.success & strict.success
    assert (gain[strict.success] >= 1.0 - 1e-4).all()
    assert (plain_gain[plain.success] > 0).all()
    assert both.sum() >= 10
    assert strict.l2[both].median() > plain.l2[both].median()


def test_no_side_effects(trained_cnn, batch):
    x, y = batch
    x_before = x.clone()
    params = list(trained_cnn.parameters())
    trained_cnn.train()
    try:
        cw(trained_cnn, x[:8], y[:8], binary_search_steps=1, steps=3)
        assert torch.equal(x, x_before)
        assert all(p.grad is None for p in params)
        assert trained_cnn.training
    finally:
        trained_cnn.eval()


def test_settings_have_no_eps_and_name_the_search():
    attack = CarliniWagnerL2(steps=10)
    assert attack.eps_values == [None] and attack.eps is None and attack.strength(None) is None
    settings = attack.settings()
    assert settings["attack"] == "cw" and settings["norm"] == "l2" and settings["loss"] == "margin"
    assert settings["steps"] == 10 and settings["binary_search_steps"] == 5
    # no pretend budget: no eps unit, no clamp (the tanh box keeps images in [0, 1])
    assert "eps_unit" not in settings and "clamp" not in settings


def test_python_defaults_are_the_config_defaults():
    """One set of CW defaults: attack/cw.yaml states exactly the Python API's (the class's; the
    functional ``cw`` takes the class's settings and has no defaults of its own)."""
    import inspect

    from omegaconf import OmegaConf

    from advlab.config import CONF_DIR

    node = OmegaConf.load(CONF_DIR / "attack" / "cw.yaml")  # "# @package attack.cw": flat keys
    parameters = inspect.signature(CarliniWagnerL2.__init__).parameters
    defaults = {k: p.default for k, p in parameters.items() if p.default is not p.empty}
    assert {k: node[k] for k in defaults if k in node} == {k: v for k, v in defaults.items() if k in node}
    assert set(defaults) - {"max_samples"} <= set(node)
    assert all(p.default is p.empty for p in inspect.signature(cw).parameters.values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"binary_search_steps": 0}, "binary_search_steps must be an integer >= 1, got 0"),
        ({"confidence": -1}, "confidence must be >= 0, got -1"),
        ({"initial_const": 0}, "initial_const must be > 0, got 0"),
        ({"lr": -0.1}, "lr must be > 0, got -0.1"),
        ({"temperature": -5}, "temperature must be > 0, got -5"),
    ],
)
def test_bad_arguments_raise_one_line(kwargs, message):
    with pytest.raises(AdvlabError, match=message) as info:
        CarliniWagnerL2(**kwargs)
    assert "\n" not in str(info.value)
