"""The ``advlab`` command: help, a 2-job ``-m`` sweep, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import QUICK


def advlab(
    *args: str, cwd: Path, data_dir: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADVLAB_ROOT": str(cwd), "HYDRA_FULL_ERROR": "0", **(env or {})}
    if data_dir is not None:
        env["ADVLAB_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "advlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_help_lists_config_groups(tmp_path):
    result = advlab("--help", cwd=tmp_path)
    assert result.returncode == 0
    for group in ("attack:", "data:", "defense:", "experiment:", "logger:", "model:", "trainer:", "paths:"):
        assert group in result.stdout
    assert "paper_mnist_fgsm" in result.stdout


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
        (["paths.data_dir=/nonexistent/advlab", "data.download=false"], "advlab: error: MNIST not found in /nonexistent/advlab/MNIST/raw"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, mnist_dir, overrides, message):
    result = advlab(*QUICK, *overrides, cwd=tmp_path, data_dir=mnist_dir)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    [failed] = (tmp_path / "outputs" / "runs" / "advlab").glob("*/results.json")
    assert json.loads(failed.read_text())["status"] == "failed"
