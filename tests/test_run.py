"""A Hydra-composed run end to end on a few batches, and reuse of its trained weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advlab.errors import AdvlabError
from advlab.run import run


def test_composed_run_end_to_end(make_cfg):
    cfg = make_cfg("attack.fgsm.eps=[0.0,0.1,0.3]")
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["status"] == "completed"
    entry = on_disk["models"]["undefended"]
    assert entry["architecture"] == "mnist_cnn" and entry["training"]["trained"] is True
    clean = entry["evaluation"]["clean"]
    rows = entry["evaluation"]["attacks"]["fgsm"]["rows"]
    assert clean["n"] == 300 and [r["eps"] for r in rows] == [0.0, 0.1, 0.3]
    assert rows[0]["top1_acc"] == pytest.approx(clean["top1_acc"])  # eps 0 = clean
    assert rows[-1]["top1_acc"] < rows[0]["top1_acc"]
    assert all(r["max_linf"] <= r["eps"] + 1e-6 for r in rows)
    assert rows[1]["top1_err"] == pytest.approx(1 - rows[1]["top1_acc"])
    assert rows[1]["correct"] == round(rows[1]["top1_acc"] * 300)
    for name in ("results.csv", "results.md", "accuracy_vs_eps.png", "examples_undefended.png", "undefended.pt"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "undefended_loss.csv").read_text().startswith("epoch,train_loss,val_loss")
    assert results["models"]["undefended"]["evaluation"]["clean"] == clean


def test_reusing_a_checkpoint_skips_training_and_gives_the_same_numbers(make_cfg, tmp_path):
    first = run(make_cfg("attack.fgsm.eps=[0.1]"))
    weights = first["models"]["undefended"]["training"]["checkpoint"]
    second_cfg = make_cfg("attack.fgsm.eps=[0.1]", f"model.checkpoint={weights}", f"paths.output_dir={tmp_path / 'again'}")
    second = run(second_cfg)
    a, b = (r["models"]["undefended"] for r in (first, second))
    assert b["training"] == {"trained": False, "checkpoint": weights}
    assert a["evaluation"]["clean"] == b["evaluation"]["clean"]
    assert a["evaluation"]["attacks"]["fgsm"]["rows"][0]["top1_acc"] == b["evaluation"]["attacks"]["fgsm"]["rows"][0]["top1_acc"]
    assert not (tmp_path / "again" / "undefended.pt").exists()


def test_bad_eps_fails_before_training(make_cfg):
    cfg = make_cfg("attack.fgsm.eps=[0.1,-0.5]")
    with pytest.raises(AdvlabError, match="eps must be >= 0, got -0.5"):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_gradients_are_real_inside_the_lightning_test_loop(make_cfg):
    """The evaluation runs under Lightning's no_grad: a masked gradient would show as a zero
    share of 1 and no accuracy change. Both must be clearly absent."""
    results = run(make_cfg("attack.fgsm.eps=[0.2]"))
    row = results["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"][0]
    assert row["zero_grad_share"] == 0.0
    assert row["top1_acc"] < results["models"]["undefended"]["evaluation"]["clean"]["top1_acc"] - 0.2
    assert torch.is_grad_enabled()


def test_max_samples_limits_an_attack_to_the_first_images(make_cfg):
    results = run(make_cfg("attack.fgsm.eps=[0.1]", "attack.fgsm.max_samples=120", "logger=none"))
    evaluation = results["models"]["undefended"]["evaluation"]
    assert evaluation["clean"]["n"] == 300  # the clean pass still sees the whole test subset
    [row] = evaluation["attacks"]["fgsm"]["rows"]
    assert row["n"] == 120 and evaluation["attacks"]["fgsm"]["settings"]["max_samples"] == 120
