"""Adversarial training: the inner maximisation's guarantees, a brief training that beats the
undefended model under PGD, and the Hydra/Lightning path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import PGD
from advlab.data.mnist import load_mnist
from advlab.defenses.adversarial_training import (
    METHODS,
    AdversarialTraining,
    inner_max,
    ramped_eps,
)
from advlab.errors import AdvlabError


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def data(mnist_dir):
    x, y = load_mnist(mnist_dir, train=True, download=False)
    xt, yt = load_mnist(mnist_dir, train=False, download=False)
    return x[:3000], y[:3000], xt[:300], yt[:300]


def _fit(x, y, defense: AdversarialTraining | None, epochs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for epoch in range(epochs):
        for start in range(0, len(x), 100):
            xb, yb = x[start : start + 100], y[start : start + 100]
            optimizer.zero_grad()
            if defense is None:
                loss = nn.functional.cross_entropy(model(xb), yb)
            else:
                x_adv = defense.adversarial(model, xb, yb, epoch + start / len(x), generator)
                assert model.training  # the attack ran in eval mode and gave the mode back
                assert all(p.grad is None or not p.grad.any() for p in model.parameters())
                loss, _ = defense.loss(model, xb, x_adv, yb)
            loss.backward()
            optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.mark.parametrize("method", METHODS)
def test_inner_max_guarantees(method, data):
    torch.manual_seed(0)
    model = _mlp()
    model.train()
    x, y = data[2][:32], data[3][:32]
    before = x.clone()
    x_adv = inner_max(model, x, y, method, 0.1, steps=3, generator=torch.Generator().manual_seed(1))
    again = inner_max(model, x, y, method, 0.1, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, before) and torch.equal(x_adv, again)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model[3].training
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    reach = 3 * 0.1 if method == "n_fgsm" else 0.1  # N-FGSM: noise 2ε plus a step of ε, unprojected
    assert (x_adv - x).abs().max() <= reach + 1e-6
    assert (x_adv - x).abs().max() > 0


def test_bad_settings_and_ramp():
    with pytest.raises(AdvlabError, match="method"):
        AdversarialTraining(method="free")
    with pytest.raises(AdvlabError, match="defense.eps"):
        AdversarialTraining(eps=3)
    assert ramped_eps(0.3, 0.5, 1.0) == pytest.approx(0.15) and ramped_eps(0.3, 2.0, 1.0) == 0.3
    assert ramped_eps(0.3, 0.0, 0.0) == 0.3


def test_brief_adversarial_training_beats_the_undefended_model_under_pgd(data):
    x, y, xt, yt = data
    eps = 0.1
    plain = _fit(x, y, None)
    trained = _fit(x, y, AdversarialTraining("pgd", eps=eps, steps=3))
    attack = PGD(eps, steps=10, step_size=2.5 * eps / 10)
    robust = {}
    for name, model in {"plain": plain, "trained": trained}.items():
        with torch.no_grad():
            robust[name] = (model(attack(model, xt, yt)).argmax(1) == yt).float().mean().item()
    assert robust["trained"] > robust["plain"] + 0.2


@pytest.mark.slow
def test_defense_through_hydra(make_cfg):
    from advlab.run import run

    cfg = make_cfg(
        "defense=adversarial_training",
        "defense.method=fgsm_rs",
        "defense.eps=0.1",
        "defense.robust_val_samples=64",
        "defense.compare_undefended=true",
        "attack=[pgd,autoattack]",
        "attack.pgd.eps=[0.1]",
        "attack.pgd.max_samples=64",
        "attack.autoattack.eps=[0.1]",
        "attack.autoattack.steps=5",
        "attack.autoattack.targets=2",
        "attack.autoattack.queries=20",
        "attack.autoattack.max_samples=64",
        "logger=none",
    )
    results = run(cfg)
    info = results["models"]["adversarial"]["training"]
    assert info["method"] == "fgsm_rs" and info["best_robust_val_acc"] is not None
    assert set(results["models"]) == {"undefended", "adversarial"}
    row = results["models"]["adversarial"]["evaluation"]["attacks"]["autoattack"]["rows"][0]
    assert row["n"] == 64 and row["square_acc"] == pytest.approx(row["top1_acc"])
    assert row["apgd_ce_acc"] >= row["apgd_t_acc"] >= row["square_acc"]
