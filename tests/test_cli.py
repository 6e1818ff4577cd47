"""The ``advlab`` command: help, a 2-job ``-m`` sweep, one-line errors with exit status 2, one
folder per job even for jobs started together, refused folders, and SIGTERM (exit 143, a folder
that says ``terminated``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import QUICK
from helpers import _env, _old_job, _snapshot, advlab


def launch(*args: str, cwd: Path, data_dir: Path | None = None, name: str = "job") -> subprocess.Popen:
    """``advlab`` in the background, its output in ``<cwd>/<name>.out`` / ``.err``."""
    return subprocess.Popen(
        [sys.executable, "-m", "advlab", *args],
        cwd=cwd,
        env=_env(cwd, data_dir),
        stdout=open(cwd / f"{name}.out", "w"),
        stderr=open(cwd / f"{name}.err", "w"),
        text=True,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"advlab ended (status {proc.returncode}) before the awaited moment"
        assert time.monotonic() < deadline, "the awaited moment never came"
        time.sleep(0.2)


def log_says(folder: Path, text: str) -> Callable[[], bool]:
    return lambda: (folder / "cli.log").is_file() and text in (folder / "cli.log").read_text()


# QUICK with the progress lines on (the tests below wait for them)
LINES = [o for o in QUICK if "enable_progress_bar" not in o] + ["callbacks.progress_bar=lines", "logger=none"]


def test_help_lists_config_groups(tmp_path):
    result = advlab("--help", cwd=tmp_path)
    assert result.returncode == 0
    for group in ("attack:", "data:", "defense:", "experiment:", "logger:", "model:", "trainer:", "paths:"):
        assert group in result.stdout
    assert "paper_mnist_fgsm" in result.stdout
    # the examples quote lists, which zsh would otherwise expand (and fail on)
    assert "advlab -m 'attack.fgsm.eps=[0.1],[0.3]'" in result.stdout and " attack.fgsm.eps=[" not in result.stdout


def test_two_value_multirun_sweep(tmp_path, mnist_dir):
    result = advlab("-m", *QUICK, "attack.fgsm.eps=[0.05],[0.3]", "logger=none", cwd=tmp_path, data_dir=mnist_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("advlab/*/[0-9]*"))
    assert [j.name for j in jobs] == ["0", "1"]
    accuracies = []
    for job, eps in zip(jobs, (0.05, 0.3)):
        assert (job / ".hydra" / "config.yaml").is_file()
        results = json.loads((job / "results.json").read_text())
        rows = results["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"]
        assert [r["eps"] for r in rows] == [eps]
        assert f"attack.fgsm.eps=[{eps}]" in results["overrides"]
        accuracies.append(rows[0]["top1_acc"])
    assert accuracies[1] < accuracies[0]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.name=resnet_9000"], "advlab: error: unknown model 'resnet_9000'"),
        (["attack.fgsm.eps=[0.1,-0.2]"], "advlab: error: eps must be >= 0, got -0.2"),
        (
            ["paths.data_dir=/nonexistent/advlab", "data.download=false"],
            "advlab: error: MNIST not found in /nonexistent/advlab/MNIST/raw",
        ),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, mnist_dir, overrides, message):
    result = advlab(*QUICK, *overrides, cwd=tmp_path, data_dir=mnist_dir)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    [failed] = (tmp_path / "outputs" / "runs" / "advlab").glob("*/results.json")
    assert json.loads(failed.read_text())["status"] == "failed"


def test_two_jobs_started_together_keep_their_own_results(tmp_path, mnist_dir):
    jobs = {
        eps: launch(
            *QUICK, "logger=none", f"attack.fgsm.eps=[{eps}]", cwd=tmp_path, data_dir=mnist_dir, name=f"eps{eps}"
        )
        for eps in (0.1, 0.3)
    }
    for eps, proc in jobs.items():
        assert proc.wait(timeout=600) == 0, (tmp_path / f"eps{eps}.err").read_text()[-2000:]
    folders = sorted((tmp_path / "outputs" / "runs" / "advlab").iterdir())
    assert len(folders) == 2
    found = set()
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        [row] = results["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"]
        assert results["status"] == "completed" and f"attack.fgsm.eps=[{row['eps']}]" in results["overrides"]
        assert f"attack.fgsm.eps=[{row['eps']}]" in (folder / ".hydra" / "overrides.yaml").read_text()
        assert (folder / "cli.log").read_text().count("Trainer.fit") <= 1  # one job's log, not two interleaved
        found.add(row["eps"])
    assert found == {0.1, 0.3}


def test_a_folder_with_results_is_refused_in_one_line_and_left_as_it_was(tmp_path, mnist_dir):

    folder = tmp_path / "job"
    folder.mkdir()
    _old_job(folder)
    before = _snapshot(folder)
    result = advlab(*QUICK, f"hydra.run.dir={folder}", cwd=tmp_path, data_dir=mnist_dir)
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"advlab: error: {folder} already holds a job's results") and "overwrite=true" in line
    assert _snapshot(folder) == before


def test_sigterm_during_training_exits_143_and_the_folder_says_terminated(tmp_path, mnist_dir):
    folder = tmp_path / "job"
    proc = launch(*LINES, "trainer.max_epochs=50", f"hydra.run.dir={folder}", cwd=tmp_path, data_dir=mnist_dir)
    wait_for(log_says(folder, "undefended: epoch 1/50"), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    record = json.loads((folder / "results.json").read_text())
    assert record["status"] == "terminated" and record["error"] == "terminated by SIGTERM"
    assert not list(folder.glob("results.[cm]*")) and not (folder / "undefended.pt").exists()
    assert "Received SIGTERM" in (folder / "cli.log").read_text()  # it arrived inside Lightning's loop
    assert "terminated by SIGTERM" in (tmp_path / "job.err").read_text()


def test_sigterm_during_a_single_batch_evaluation_is_not_ignored(tmp_path, mnist_dir):
    """Lightning checks its SIGTERM flag between batches only: a one-batch evaluation used to run
    to the end and exit 0."""
    import torch

    from advlab.models import MnistCNN

    torch.save(MnistCNN().state_dict(), tmp_path / "cnn.pt")
    folder = tmp_path / "job"
    args = [
        f"model.checkpoint={tmp_path / 'cnn.pt'}",
        "attack=pgd",
        "attack.pgd.steps=5000",
        "data.eval_batch_size=300",
    ]
    proc = launch(*LINES, *args, f"hydra.run.dir={folder}", cwd=tmp_path, data_dir=mnist_dir)
    wait_for(log_says(folder, "eval_undefended: 1 batches"), proc)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert json.loads((folder / "results.json").read_text())["status"] == "terminated"
    assert not (folder / "results.md").exists()


@pytest.mark.slow
def test_sigterm_stops_a_sweep_and_lists_what_finished(tmp_path, mnist_dir):
    import torch

    from advlab.models import MnistCNN

    torch.save(MnistCNN().state_dict(), tmp_path / "cnn.pt")
    args = [
        f"model.checkpoint={tmp_path / 'cnn.pt'}",
        "attack=pgd",
        "data.test_subset=100",
        "attack.pgd.steps=1,5000,1",
    ]
    proc = launch("-m", *LINES, *args, cwd=tmp_path, data_dir=mnist_dir)
    sweep = tmp_path / "outputs" / "multirun" / "advlab"
    wait_for(lambda: any(log_says(job, "eval_undefended: 1 batches")() for job in sweep.glob("*/1")), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    [folder] = sweep.iterdir()
    assert json.loads((folder / "0" / "results.json").read_text())["status"] == "completed"
    assert json.loads((folder / "1" / "results.json").read_text())["status"] == "terminated"
    assert not (folder / "2").exists()
    err = (tmp_path / "job.err").read_text()
    assert "sweep terminated by SIGTERM: 1 of 2 started job(s) completed; the jobs after job 1 did not run" in err
    assert "job 0: completed  attack.pgd.steps=1  (" in err and "job 1: terminated attack.pgd.steps=5000  (" in err
