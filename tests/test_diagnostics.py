"""Gradient-masking diagnostics: they fire on a saturated (distilled-like) model and stay quiet on a
normal one; each rule checked on hand-made results; a real distilled network trips them (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from advlab.attacks import FGSM, PGD
from advlab.diagnostics import add_warnings, format_warnings, masking_warnings
from advlab.lit.attack_eval import AttackEvaluation
from advlab.run import run


class Saturated(torch.nn.Module):
    """The fixture CNN with its logits multiplied by 100, as a network trained at T = 100 and
    deployed at T = 1 has them: same decisions, a softmax saturated to exactly 0 and 1."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 100.0


def evaluate(model, attacks, x, y) -> dict:
    module = AttackEvaluation(model, attacks, num_classes=10, example_count=0)
    trainer = L.Trainer(
        accelerator="cpu",
        inference_mode=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.test(module, DataLoader(TensorDataset(x, y), batch_size=128), verbose=False)
    return module.results


@pytest.fixture
def fgsm_sweep():
    return {"fgsm": FGSM(eps=[0.0, 0.1, 0.2, 0.3])}


def test_zero_gradient_warning_fires_on_a_saturated_model(trained_cnn, test_batch, fgsm_sweep):
    x, y = test_batch
    evaluation = evaluate(Saturated(trained_cnn), fgsm_sweep, x, y)
    rows = evaluation["attacks"]["fgsm"]["rows"]
    assert rows[-1]["zero_grad_share"] > 0.5
    checks = {w["check"] for w in masking_warnings(evaluation, "saturated")}
    assert "zero_gradient" in checks and "no_fall" in checks
    warning = next(w for w in masking_warnings(evaluation, "saturated") if w["check"] == "zero_gradient")
    assert warning["attack"] == "fgsm" and "exactly zero" in warning["message"] and "\n" not in warning["message"]


def test_attacking_logits_over_t_removes_the_zero_gradients(trained_cnn, test_batch):
    x, y = test_batch
    attacks = {"fgsm_t": FGSM(eps=[0.0, 0.3], temperature=100.0), "fgsm_margin": FGSM(eps=[0.0, 0.3], loss="margin")}
    evaluation = evaluate(Saturated(trained_cnn), attacks, x, y)
    for name in attacks:
        row = evaluation["attacks"][name]["rows"][-1]
        assert row["zero_grad_share"] < 0.05, name
        assert row["top1_acc"] < 0.5 * evaluation["clean"]["top1_acc"], name
    assert not [w for w in masking_warnings(evaluation) if w["check"] == "zero_gradient"]


def test_diagnostics_stay_quiet_on_a_normal_model(trained_cnn, test_batch, fgsm_sweep):
    x, y = test_batch
    attacks = {**fgsm_sweep, "pgd": PGD(eps=[0.3], steps=8, step_size=0.05)}
    evaluation = evaluate(trained_cnn, attacks, x[:128], y[:128])
    assert all(r["zero_grad_share"] == 0.0 for r in evaluation["attacks"]["fgsm"]["rows"])
    assert masking_warnings(evaluation, "normal") == []


def _block(kind: str, rows: list[tuple[float, float]], n: int = 1000, **settings) -> dict:
    """An attack's results block as the evaluation writes it, from a real attack object: its
    settings, and per row the strength it declares (no attack names involved)."""
    attack = {"fgsm": FGSM, "pgd": PGD}[kind](eps=[eps for eps, _ in rows], **settings)
    return {
        "settings": attack.settings(),
        "rows": [
            {"eps": eps, "n": n, "top1_acc": acc, "zero_grad_share": 0.0, "strength": attack.strength(eps)}
            for eps, acc in rows
        ],
    }


def test_weaker_beating_stronger_is_flagged_once_per_stronger_attack():
    evaluation = {
        "clean": {"top1_acc": 0.98, "n": 1000},
        "attacks": {
            "fgsm": _block("fgsm", [(0.3, 0.10)]),
            "fgsm_t": _block("fgsm", [(0.3, 0.05)], temperature=100.0),
            "pgd": _block("pgd", [(0.3, 0.60)], steps=40, step_size=0.01, restarts=1),
            "pgd_margin": _block("pgd", [(0.3, 0.01)], steps=40, step_size=0.01, restarts=1, loss="margin"),
        },
    }
    warnings = [w for w in masking_warnings(evaluation, "m") if w["check"] == "weaker_beats_stronger"]
    assert [w["attack"] for w in warnings] == ["pgd"]
    assert "fgsm_t (1 gradient step) beats pgd (40 steps) at eps 0.3" in warnings[0]["message"]


def test_small_differences_and_short_pgd_are_not_flagged():
    evaluation = {
        "clean": {"top1_acc": 0.98, "n": 1000},
        "attacks": {
            "fgsm": _block("fgsm", [(0.3, 0.20)], n=200),
            # within noise of 200 images
            "pgd": _block("pgd", [(0.3, 0.24)], n=200, steps=40, step_size=0.01),
            # 5 steps of 0.01 cannot leave a 0.05-ball: not comparable with FGSM at 0.3
            "pgd_short": _block("pgd", [(0.3, 0.45)], steps=5, step_size=0.01),
        },
    }
    assert [w for w in masking_warnings(evaluation) if w["check"] == "weaker_beats_stronger"] == []
    with pytest.warns(UserWarning, match="cannot cross"):
        assert PGD(eps=0.3, steps=5, step_size=0.01).strength(0.3) is None
    assert PGD(eps=0.3, steps=40, step_size=None, restarts=5).strength(0.3) == 200
    assert PGD(eps=0.3, steps=40, restarts=5, random_start=False).strength(0.3) == 40
    assert FGSM(eps=0.3).strength(0.3) == 1


def test_accuracy_that_rises_with_eps_is_flagged():
    evaluation = {
        "clean": {"top1_acc": 0.98, "n": 1000},
        "attacks": {"fgsm": _block("fgsm", [(0.0, 0.98), (0.1, 0.30), (0.2, 0.25), (0.25, 0.60)])},
    }
    (warning,) = masking_warnings(evaluation)
    assert warning["check"] == "no_fall" and "rises from 25.00% at eps 0.2 to 60.00% at eps 0.25" in warning["message"]


def test_add_warnings_collects_every_model_and_formats_one_line_each():
    results = {
        "models": {
            "a": {"evaluation": {"clean": {"top1_acc": 0.98}, "attacks": {"fgsm": _block("fgsm", [(0.3, 0.93)])}}},
            "b": {"evaluation": {"clean": {"top1_acc": 0.98}, "attacks": {"fgsm": _block("fgsm", [(0.3, 0.25)])}}},
        }
    }
    warnings = add_warnings(results)
    assert results["warnings"] == warnings and [w["model"] for w in warnings] == ["a"]
    assert format_warnings(warnings).startswith("WARNING a: fgsm: accuracy is still 93.00% at eps 0.3")


def test_large_eps_check_starts_beyond_the_adversarially_trained_budget():
    """A network adversarially trained at 0.3 is expected to hold at 0.3 (no warning there); at
    0.5, past its claim, the same accuracy warns. A distilled network gets no such allowance."""

    def entry(defense: str, rows: list[tuple[float, float]]) -> dict:
        training = {"eps": 0.3, "method": "pgd"} if defense == "adversarial_training" else {"temperature": 100.0}
        evaluation = {"clean": {"top1_acc": 0.98, "n": 1000}, "attacks": {"pgd": _block("pgd", rows)}}
        return {"defense": defense, "training": training, "evaluation": evaluation}

    held = {"models": {"robust": entry("adversarial_training", [(0.1, 0.95), (0.3, 0.90)])}}
    assert add_warnings(held) == []
    beyond = {"models": {"robust": entry("adversarial_training", [(0.3, 0.90), (0.5, 0.88)])}}
    (warning,) = add_warnings(beyond)
    assert warning["check"] == "no_fall" and "88.00% at eps 0.5" in warning["message"]
    distilled = {"models": {"distilled": entry("distillation", [(0.1, 0.95), (0.3, 0.90)])}}
    assert [w["check"] for w in add_warnings(distilled)] == ["no_fall"]


@pytest.mark.slow
def test_a_real_distilled_network_trips_the_masking_warnings(make_cfg, capsys):
    """Teacher and student at T = 100, one epoch each on 5 000 images: the deployed student's
    softmax already saturates, plain FGSM stalls and the run says so (~2 minutes on a CPU)."""
    cfg = make_cfg(
        "defense=distillation",
        "defense.teacher.training.optimizer.lr=0.001",
        "defense.student.training.optimizer.lr=0.001",
        "data.train_subset=5000",
        "data.test_subset=500",
        "attack=[fgsm,fgsm_temperature]",
        "attack.fgsm.eps=[0.0,0.1,0.2,0.3]",
        "attack.fgsm_temperature.eps=[0.0,0.1,0.2,0.3]",
    )
    results = run(cfg)
    printed = capsys.readouterr().out
    on_disk = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert on_disk["warnings"] == results["warnings"]
    distilled = {(w["check"], w["attack"]) for w in results["warnings"] if w["model"] == "distilled"}
    assert ("zero_gradient", "fgsm") in distilled and ("no_fall", "fgsm") in distilled
    assert not any(w["attack"] == "fgsm_temperature" for w in results["warnings"])
    assert not any(w["model"] == "undefended" and w["check"] == "zero_gradient" for w in results["warnings"])
    assert "WARNING distilled: fgsm:" in printed
    rows = results["models"]["distilled"]["evaluation"]["attacks"]
    assert rows["fgsm_temperature"]["rows"][-1]["top1_acc"] < rows["fgsm"]["rows"][-1]["top1_acc"] - 0.3


def test_thresholds_come_from_the_config_and_unknown_keys_are_refused():
    from advlab.diagnostics import Thresholds, thresholds
    from advlab.errors import AdvlabError

    assert thresholds(None) == Thresholds()
    assert thresholds({"zero_grad_share": 0.5}).zero_grad_share == 0.5
    with pytest.raises(AdvlabError, match="unknown key evaluation.diagnostics.zero_grad"):
        thresholds({"zero_grad": 0.5})
