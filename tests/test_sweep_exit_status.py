"""A sweep whose jobs ran in other processes (joblib, submitit) still fails the command when a
job failed: the exit status is read back from the jobs' results.json when the sweep ends."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from advlab import cli


@pytest.mark.parametrize(
    "records, expected",
    [
        ([{"status": "completed"}, {"status": "completed"}], 0),
        ([{"status": "completed"}, {"status": "failed", "error": "AdvlabError: eps must be >= 0, got -1"}], 2),
        ([{"status": "failed", "error": "RuntimeError: boom"}, {"status": "failed", "error": "AdvlabError: x"}], 2),
        ([{"status": "failed", "error": "RuntimeError: boom"}], 1),
        ([{"status": "terminated", "error": "terminated by SIGTERM"}, {"status": "completed"}], 143),
    ],
)
def test_sweep_exit_status_is_read_back_from_the_jobs(tmp_path, monkeypatch, records, expected):
    monkeypatch.setattr(cli, "_exit_status", 0)
    for number, record in enumerate(records):
        (tmp_path / str(number)).mkdir()
        (tmp_path / str(number) / "results.json").write_text(json.dumps(record))
    (tmp_path / "summary.md").write_text("not a job")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    cli.SweepExitStatus().on_multirun_end(config)
    assert cli._exit_status == expected
