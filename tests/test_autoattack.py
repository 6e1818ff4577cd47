"""APGD, Square and AutoAttack on tiny MNIST networks: strength against PGD and FGSM, the
ensemble's worst case, the sanity flags and the attack guarantees."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks import APGD, FGSM, PGD, AutoAttack, Square
from advlab.attacks.apgd import checkpoints
from advlab.attacks.losses import dlr_loss
from advlab.autoattack_checks import autoattack_warnings
from advlab.data.mnist import load_mnist


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))


def _train(
    model: nn.Module,
    x,
    y,
    epochs: int = 2,
    temperature: float = 1.0,
    targets=None,
    lr: float = 1e-3,
):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(x), 100):
            target = y[start : start + 100] if targets is None else targets[start : start + 100]
            optimizer.zero_grad()
            F.cross_entropy(model(x[start : start + 100]) / temperature, target).backward()
            optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def data(mnist_dir):
    x, y = load_mnist(mnist_dir, train=True, download=False)
    xt, yt = load_mnist(mnist_dir, train=False, download=False)
    return x[:4000], y[:4000], xt[:200], yt[:200]


@pytest.fixture(scope="module")
def small_model(data):
    torch.manual_seed(0)
    return _train(_mlp(), data[0], data[1])


@pytest.fixture(scope="module")
def distilled(data):
    """Defensive distillation at T = 100 (teacher and student trained on logits / 100, the
    student on the teacher's soft labels), deployed at T = 1."""
    torch.manual_seed(0)
    x, y = data[0], data[1]
    # a large rate: at T = 100 the logits must grow 100-fold
    teacher = _train(_mlp(), x, y, epochs=3, temperature=100.0, lr=0.03)
    with torch.no_grad():
        soft = F.softmax(teacher(x) / 100.0, dim=1)
    return _train(_mlp(), x, y, epochs=3, temperature=100.0, targets=soft, lr=0.03)


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_checkpoint_schedule_and_dlr_scale_invariance():
    points = checkpoints(100)
    assert points[:2] == [22, 41] and points == sorted(set(points)) and points[-1] <= 100
    logits = torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    targets = (labels + 1) % 10
    assert torch.allclose(dlr_loss(logits, labels), dlr_loss(100 * logits + 3, labels), atol=1e-5)
    assert torch.allclose(
        dlr_loss(logits, labels, targets),
        dlr_loss(100 * logits + 3, labels, targets),
        atol=1e-5,
    )


def test_apgd_beats_pgd_with_a_bad_step(small_model, data):
    x, y = data[2], data[3]
    eps = 0.1
    with pytest.warns(UserWarning, match="cannot cross"):  # advlab warns about this step, rightly
        badly_stepped = PGD(eps, steps=20, step_size=eps / 100, random_start=False)
    bad = _acc(small_model, badly_stepped(small_model, x, y), y)
    tuned = _acc(small_model, PGD(eps, steps=20, step_size=eps / 8)(small_model, x, y), y)
    auto = _acc(small_model, APGD(eps, steps=20)(small_model, x, y), y)
    assert auto < bad - 0.2
    assert auto <= tuned + 0.03  # no weaker than a tuned PGD of the same length


def test_apgd_t_and_square_break_the_distilled_student_where_fgsm_does_not(distilled, data):
    x, y = data[2], data[3]
    clean = _acc(distilled, x, y)
    assert clean > 0.8
    fgsm = FGSM(0.3)
    fgsm_acc = _acc(distilled, fgsm(distilled, x, y), y)
    apgd_t = _acc(distilled, APGD(0.3, loss="dlr", targets=3, steps=20)(distilled, x, y), y)
    square = _acc(distilled, Square(0.3, queries=300)(distilled, x, y), y)
    assert fgsm_acc > clean / 2  # the saturated softmax stops FGSM
    assert apgd_t < 0.1 and square < fgsm_acc - 0.3


def test_autoattack_is_the_per_image_worst_case(small_model, data):
    x, y = data[2], data[3]
    with torch.no_grad():
        correct = small_model(x).argmax(1) == y
    x, y = (
        x[correct],
        y[correct],
    )  # the ensemble's first component then sees exactly these images
    eps = 0.08
    attack = AutoAttack(eps, steps=20, targets=3, queries=200)
    step = next(attack.sweep(small_model, x, y))
    x_adv, masks = step.x_adv, step.extras
    with torch.no_grad():
        robust = small_model(x_adv).argmax(1) == y
    assert torch.equal(robust, masks["square_acc"])
    assert bool(
        (masks["apgd_t_acc"] <= masks["apgd_ce_acc"]).all() and (masks["square_acc"] <= masks["apgd_t_acc"]).all()
    )
    alone = {
        "apgd_ce": APGD(eps, steps=20),
        "apgd_t": APGD(eps, loss="dlr", targets=3, steps=20),
        "square": Square(eps, queries=200),
    }
    robust_alone = {}
    for name, component in alone.items():
        with torch.no_grad():
            robust_alone[name] = small_model(component(small_model, x, y)).argmax(1) == y
        assert robust.float().mean() <= robust_alone[name].float().mean()
    # same images, same seed: APGD-CE inside the ensemble is APGD-CE alone, image by image
    assert bool((robust <= robust_alone["apgd_ce"]).all())
    assert bool((masks["apgd_ce_acc"] == robust_alone["apgd_ce"]).all())


class _Noisy(nn.Module):
    """Randomised in eval mode too (like a randomised-smoothing or input-noise defence)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x + 0.05 * torch.randn_like(x))


def test_sanity_flags_randomized_and_probability_outputs(small_model, data):
    x, y = data[2][:40], data[3][:40]
    quick = {"steps": 5, "targets": 2, "queries": 20}
    attack = AutoAttack(0.1, **quick)

    def flags(model):
        return next(attack.sweep(model, x, y)).extras

    assert flags(_Noisy(small_model))["randomized_share"].float().mean() > 0.5
    assert bool(flags(nn.Sequential(small_model, nn.Softmax(dim=1)))["probability_output_share"].all())
    plain = flags(small_model)
    assert not plain["randomized_share"].any() and not plain["probability_output_share"].any()
    rows = [
        {
            "eps": 0.1,
            "randomized_share": 0.5,
            "probability_output_share": 1.0,
            "square_only_share": 0.1,
        }
    ]
    checks = {w["check"] for w in autoattack_warnings("m", {"autoattack": {"rows": rows}})}
    assert checks == {"randomized", "probability_output", "square_beats_gradient"}
    quiet = [
        {
            "eps": 0.1,
            "randomized_share": 0.0,
            "probability_output_share": 0.0,
            "square_only_share": 0.0,
        }
    ]
    assert autoattack_warnings("m", {"autoattack": {"rows": quiet}}) == []


@pytest.mark.parametrize(
    "attack",
    [
        APGD(0.1, steps=5),
        APGD(0.1, loss="dlr", targets=2, steps=5),
        APGD(1.0, norm="l2", steps=5, restarts=2),
        Square(0.1, queries=30),
        AutoAttack(0.1, steps=5, targets=2, queries=30),
    ],
    ids=["apgd_ce", "apgd_t", "apgd_l2", "square", "autoattack"],
)
def test_guarantees(attack, small_model, data):
    x, y = data[2][:50], data[3][:50]
    small_model.train()
    small_model[4].eval()  # a mixed state the attack must give back as it was
    before = x.clone()
    try:
        first = attack(small_model, x, y)
        second = attack(small_model, x, y)
        assert torch.equal(x, before)
        assert all(p.grad is None for p in small_model.parameters())
        assert small_model.training and small_model[3].training and not small_model[4].training
        assert torch.equal(first, second)  # seeded
        assert first.min() >= 0 and first.max() <= 1
        delta = (first - x).flatten(1)
        if getattr(attack, "norm", "linf") == "l2":
            assert delta.norm(dim=1).max() <= 1.0 + 1e-4
        else:
            assert delta.abs().max() <= 0.1 + 1e-6
        if isinstance(attack, Square):
            assert int(attack.last_queries.max()) <= 30
    finally:
        small_model.eval()
