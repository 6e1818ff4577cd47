"""FGSM: budget, identity at eps 0, one gradient per sweep, no side effects, real damage."""

from __future__ import annotations

import pytest
import torch

from advlab.attacks import FGSM, fgsm
from advlab.errors import AdvlabError
from advlab.models import NormalizedClassifier

EPS = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3]


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_budget_and_valid_range(trained_cnn, test_batch):
    x, y = test_batch
    for eps, x_adv in zip(EPS, fgsm(trained_cnn, x, y, EPS)):
        assert (x_adv - x).abs().max().item() <= eps + 1e-6
        assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype


def test_eps_zero_is_identity(trained_cnn, test_batch):
    x, y = test_batch
    assert torch.equal(fgsm(trained_cnn, x, y, 0.0), x)


def test_sweep_equals_separate_runs_and_uses_one_gradient(trained_cnn, test_batch):
    x, y = test_batch
    calls = []
    # forwards that build a graph (the input check's one-image forward runs without gradients)
    handle = trained_cnn.register_forward_hook(lambda *_: calls.append(1) if torch.is_grad_enabled() else None)
    try:
        swept = fgsm(trained_cnn, x, y, EPS)
        assert len(calls) == 1, "a list of eps must cost one forward/backward pass"
    finally:
        handle.remove()
    for eps, x_adv in zip(EPS, swept):
        assert torch.equal(x_adv, fgsm(trained_cnn, x, y, eps))


def test_no_side_effects(trained_cnn, test_batch):
    x, y = test_batch
    x_before, y_before = x.clone(), y.clone()
    params = list(trained_cnn.parameters())
    params[0].grad = torch.full_like(params[0], 7.0)  # a gradient the caller had: must survive
    trained_cnn.train()
    trained_cnn.classifier[3].eval()  # a submodule in another mode must come back as it was
    try:
        FGSM(eps=[0.1, 0.3])(trained_cnn, x, y)
        assert torch.equal(x, x_before) and torch.equal(y, y_before)
        assert torch.equal(params[0].grad, torch.full_like(params[0], 7.0))
        assert all(p.grad is None for p in params[1:])
        assert trained_cnn.training and not trained_cnn.classifier[3].training
        assert trained_cnn.features[0].training
    finally:
        params[0].grad = None
        trained_cnn.eval()


def test_accuracy_falls_as_eps_grows(trained_cnn, test_batch):
    x, y = test_batch
    accs = [accuracy(trained_cnn, x_adv, y) for x_adv in fgsm(trained_cnn, x, y, [0.0, 0.1, 0.2, 0.3])]
    assert accs[0] > 0.8, f"fixture model too weak: {accs}"
    assert accs[0] > accs[1] > accs[2] > accs[3]
    assert accs[3] < 0.5 * accs[0]


def test_attack_runs_in_eval_mode_deterministically(trained_cnn, test_batch):
    x, y = test_batch
    trained_cnn.train()  # dropout on: the attack must still see the deterministic eval-mode model
    try:
        assert torch.equal(fgsm(trained_cnn, x, y, 0.1), fgsm(trained_cnn, x, y, 0.1))
    finally:
        trained_cnn.eval()


def test_normalized_units_scale_by_std_and_clamp_off():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    model = NormalizedClassifier(net, mean=[0.5, 0.5, 0.5], std=[0.1, 0.2, 0.4])
    x = torch.rand(8, 3, 4, 4)
    y = torch.randint(0, 5, (8,))
    x_adv = fgsm(model, x, y, 0.5, eps_unit="normalized", clamp=False)
    step = (x_adv - x).abs().amax(dim=(0, 2, 3))
    assert torch.allclose(step, torch.tensor([0.05, 0.1, 0.2]), atol=1e-6)
    # pixel units ignore std; without clamp values leave [0, 1]
    x_pix = fgsm(model, x, y, 0.5, eps_unit="pixel", clamp=False)
    assert torch.allclose((x_pix - x).abs().amax(), torch.tensor(0.5))
    assert x_pix.min() < 0 or x_pix.max() > 1


def test_targeted_moves_towards_target(trained_cnn, test_batch):
    x, y = test_batch
    target = (y + 1) % 10
    hits = lambda xa: (trained_cnn(xa).argmax(1) == target).float().mean().item()  # noqa: E731
    with torch.no_grad():
        before = hits(x)
    towards = hits(fgsm(trained_cnn, x, target, 0.2, targeted=True))
    away = hits(fgsm(trained_cnn, x, y, 0.2))
    assert towards > before + 0.05 and towards > away


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": -0.1}, "eps must be >= 0, got -0.1"),
        ({"eps": [0.1, -2]}, "eps must be >= 0, got -2"),
        ({"eps": 0.1, "loss": "hinge"}, "unknown attack loss 'hinge'"),
        ({"eps": 0.1, "eps_unit": "percent"}, "unknown eps_unit 'percent'"),
        ({"eps": 0.1, "temperature": 0}, "temperature must be > 0"),
        ({"eps": 0.1, "max_samples": 0}, "max_samples must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_raise_one_line(kwargs, message):
    with pytest.raises(AdvlabError, match=message) as info:
        FGSM(**kwargs)
    assert "\n" not in str(info.value)


def test_inference_mode_is_refused_clearly(trained_cnn, test_batch):
    x, y = test_batch
    with torch.inference_mode(), pytest.raises(AdvlabError, match="inference_mode=False"):
        fgsm(trained_cnn, x, y, 0.1)
