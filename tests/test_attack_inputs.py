"""Nonsense is refused at the door of every attack, in one line naming the fix: images that are
not a floating [0, 1] batch, labels that are not class indices in range, an L∞ eps above 1 (8
meant as 8/255), and a PGD whose steps cannot cross its ball (warned, and step_size follows eps
and steps unless set). Tiny random models: these tests need no data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import PGD, CarliniWagnerL2, cw, fgsm, paste, paste_random, pgd
from advlab.diagnostics import masking_warnings
from advlab.errors import AdvlabError


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.rand(4, 3, 8, 8), torch.tensor([0, 3, 5, 9])


ATTACKS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, 0.1),
    "pgd": lambda m, x, y: pgd(m, x, y, 0.1, steps=2),
    "cw": lambda m, x, y: cw(m, x, y, steps=2, binary_search_steps=1),
}


def bad_images(x: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    return {
        "uint8": (
            (x * 255).to(torch.uint8),
            r"floating tensor in \[0, 1\], got dtype torch.uint8: convert with x.float\(\) / 255",
        ),
        "0-255": (x * 255, r"must lie in \[0, 1\], got values up to .*: divide by 255"),
        "normalised": ((x - 0.5) / 0.25, r"values down to .* \(normalised inputs\?\)"),
        "nan": (nan, "images contain NaN"),
        "no batch": (x[0], r"look like one C×H×W image without a batch dimension: pass x\[None\]"),
    }


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("case", ["uint8", "0-255", "normalised", "nan", "no batch"])
def test_bad_images_are_refused_in_one_line(model, batch, attack, case):
    x, y = batch
    images, message = bad_images(x)[case]
    with pytest.raises(AdvlabError, match=message) as info:
        ATTACKS[attack](model, images, y if case != "no batch" else y[:1])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize(
    "labels, message",
    [
        (
            torch.tensor([0.0, 3.0, 5.0, 9.0]),
            "labels must be an integer tensor of class indices, got dtype torch.float32",
        ),
        (torch.tensor([0, 3, 5]), r"one class index per image: got shape \(3,\) for 4 images"),
        (torch.tensor([0, 3, 5, 10]), "label 10 is out of range for a model with 10 classes: use 0 … 9"),
        (torch.tensor([0, -1, 5, 9]), "label -1 is out of range"),
    ],
)
def test_bad_labels_are_refused_in_one_line(model, batch, attack, labels, message):
    x, _ = batch
    with pytest.raises(AdvlabError, match=message):
        ATTACKS[attack](model, x, labels)


def test_a_model_that_rejects_the_shape_is_one_line(batch):
    x, y = batch
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 10))
    with pytest.raises(AdvlabError, match=r"the model does not accept images of shape \(4, 3, 8, 8\)") as info:
        fgsm(model, x, y, 0.1)
    assert "\n" not in str(info.value)


def test_paste_checks_its_images():
    patch = torch.ones(3, 2, 2)
    with pytest.raises(AdvlabError, match="divide by 255"):
        paste(torch.full((2, 3, 8, 8), 200.0), patch, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(AdvlabError, match="torch.uint8"):
        paste_random(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), patch)


def test_eps_above_one_in_pixels_is_refused_with_the_255_hint(model, batch):
    x, y = batch
    with pytest.raises(AdvlabError, match=r"eps 8 is larger than the \[0, 1\] pixel range .*eps=0.0314 \(8/255\)"):
        fgsm(model, x, y, 8)
    with pytest.raises(AdvlabError, match=r"eps=0.0314 \(8/255\)"):
        PGD(eps=[0.1, 8])
    fgsm(model, x, y, 1.0)  # 1 is allowed (the whole range, but meaningful)
    assert PGD(eps=2.0, norm="l2").eps == 2.0  # an L2 radius above 1 is ordinary


def test_pgd_step_size_follows_eps_and_steps_and_short_steps_warn(model, batch):
    attack = PGD(eps=[0.1, 0.3], steps=20)
    assert attack.step_for(0.3) == pytest.approx(2.5 * 0.3 / 20) and attack.crosses_ball(0.3)
    assert attack.strength(0.3) == 20
    with pytest.warns(UserWarning, match=r"20 steps of 0.01 cannot cross the eps=0.3 ball"):
        short = PGD(eps=0.3, steps=20, step_size=0.01)  # README's old example: weaker than FGSM
    assert short.strength(0.3) is None  # not compared with other attacks by the masking checks
    assert short.settings()["steps"] == 20
    # the warning names the user's line, also through the functional form, not advlab's wrapper
    x, y = batch
    with pytest.warns(UserWarning, match="cannot cross") as record:
        pgd(model, x, y, 0.3, steps=2, step_size=0.01)
    assert [w.filename for w in record] == [__file__]


def test_cw_has_one_set_of_defaults():
    attack = CarliniWagnerL2()
    assert (attack.steps, attack.binary_search_steps, attack.initial_const, attack.lr) == (100, 5, 1.0, 0.1)


def test_no_fall_warning_stays_quiet_at_chance_level():
    def evaluation(clean: float) -> dict:
        rows = [{"eps": e, "n": 1000, "top1_acc": a, "strength": 1} for e, a in [(0.1, clean), (0.3, clean)]]
        return {
            "clean": {"top1_acc": clean, "n": 1000},
            "num_classes": 10,
            "attacks": {"fgsm": {"settings": {"attack": "fgsm", "eps_unit": "pixel", "norm": "linf"}, "rows": rows}},
        }

    assert [w["check"] for w in masking_warnings(evaluation(0.9))] == ["no_fall"]  # a trained net: warn
    assert masking_warnings(evaluation(0.105)) == []  # 10 classes, ~10 %: untrained, nothing to fall


def test_robustness_headers_state_the_steps_used():
    from hydra import compose, initialize_config_dir

    from advlab.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=mnist_robustness", "attack.pgd.steps=20"])
    headers = [c.header for c in cfg.reports.robustness.columns]
    assert "PGD-20 0.3 ce" in headers and "PGD-40 0.3 margin" in headers
