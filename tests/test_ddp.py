"""Attack evaluation under DDP (2 CPU processes, gloo) equals the single-process numbers:
the input gradients are real in every process (FGSM and PGD), no test image is counted twice,
and the job is one wandb run (rank 0 opens it; the other rank does not)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import advlab

from advlab.run import run


def test_ddp_evaluation_matches_single_process(trained_cnn, make_cfg, tmp_path, mnist_dir):
    weights = tmp_path / "cnn.pt"
    torch.save(trained_cnn.state_dict(), weights)
    common = [
        f"model.checkpoint={weights}",
        "data.test_subset=301",  # odd: a padding sampler would count an image twice
        "data.eval_batch_size=50",
        "attack.fgsm.eps=[0.0,0.1,0.3]",
        "logger=none",
    ]
    single = run(make_cfg(*common))["models"]["undefended"]["evaluation"]

    workdir = tmp_path / "ddp"
    workdir.mkdir()
    # offline wandb: every wandb folder kept under tmp_path, nothing sent anywhere
    wandb_env = {name: str(tmp_path / name) for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}
    result = advlab(
        *common[:-1],
        "attack=[fgsm,pgd]",
        "logger=wandb",
        "attack.pgd.steps=3",
        "attack.pgd.step_size=0.1",
        "attack.pgd.eps=[0.3]",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "+trainer.enable_progress_bar=false",
        cwd=workdir,
        data_dir=mnist_dir,
        env=wandb_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = (workdir / "outputs" / "runs").glob("*/*/results.json")
    ddp = json.loads(path.read_text())["models"]["undefended"]["evaluation"]
    # one wandb run for the job, opened by rank 0 only
    assert len(list(workdir.rglob("offline-run-*"))) == 1

    assert ddp["clean"]["n"] == single["clean"]["n"] == 301
    assert ddp["clean"]["correct"] == single["clean"]["correct"]
    for a, b in zip(single["attacks"]["fgsm"]["rows"], ddp["attacks"]["fgsm"]["rows"]):
        assert (a["eps"], a["n"], a["correct"]) == (b["eps"], b["n"], b["correct"])
        assert b["top5_acc"] == pytest.approx(a["top5_acc"])
        assert b["zero_grad_share"] == 0.0
    assert ddp["attacks"]["fgsm"]["rows"][-1]["top1_acc"] < ddp["clean"]["top1_acc"] - 0.3
    # PGD's input gradients under DDP: never all zero, and the attack breaks the model (its
    # random starts differ from a single process's, whose batches hold other images: no equality)
    [pgd] = ddp["attacks"]["pgd"]["rows"]
    assert pgd["n"] == 301 and pgd["zero_grad_share"] == 0.0
    assert pgd["top1_acc"] < ddp["clean"]["top1_acc"] - 0.3
