"""Progress within a long evaluation batch, and epoch numbers counted from 1 in the Rich bar."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

from advlab.lit.progress import LineProgress, StageRichProgressBar


class SlowEval(L.LightningModule):
    """One test batch that takes ``seconds``, like a PGD-40 batch of 1 000 images."""

    def __init__(self, seconds: float):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)
        self.seconds = seconds

    def test_step(self, batch, batch_idx):
        time.sleep(self.seconds)


def test_a_long_evaluation_batch_is_not_silent(caplog):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 2)), batch_size=4)
    bar = LineProgress("eval_undefended", heartbeat_s=0.2)
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[bar], enable_model_summary=False)
    with caplog.at_level(logging.INFO, logger="advlab.progress"):
        trainer.test(SlowEval(1.1), data, verbose=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "advlab.progress"]
    assert lines[0] == "eval_undefended: 1 batches of clean + attacks"
    beats = [line for line in lines if "still running" in line]
    assert len(beats) >= 3 and beats[0].startswith("eval_undefended: batch 1/1 still running")
    assert lines[-1].startswith("eval_undefended: 1/1 batches")
    count = len(caplog.records)
    time.sleep(0.5)  # the heartbeat stops with the evaluation
    assert len(caplog.records) == count


def test_rich_bar_counts_epochs_from_one():
    bar = StageRichProgressBar("undefended")
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, callbacks=[bar])
    bar._trainer = trainer  # attached at fit start; enough for the description
    assert bar._get_train_description(0).strip() == "undefended: epoch 1/1"
    trainer = L.Trainer(accelerator="cpu", max_epochs=-1, logger=False, callbacks=[bar])
    bar._trainer = trainer
    assert bar._get_train_description(4).strip() == "undefended: epoch 5"
