"""Hydra launchers past one process: the joblib and SLURM configs compose with advlab's defaults
and take overrides, and a real 2-job sweep runs through joblib's worker processes and through
submitit's local executor with each job in its own folder and the sweep summary intact."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers import advlab
from hydra import compose, initialize_config_dir

from advlab.config import CONF_DIR

# advlab's launcher files are validated against the plugins' schemas of the same name (the CLI
# silences Hydra's notice about it; compose() in a test does not go through the CLI)
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema:UserWarning")


def _launcher(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra.launcher


def test_joblib_config_composes():
    launcher = _launcher("hydra/launcher=joblib", "hydra.launcher.n_jobs=3")
    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 3
    assert launcher.prefer == "processes"


def test_submitit_slurm_config_composes_with_cluster_settings():
    launcher = _launcher(
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.tasks_per_node=4",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.array_parallelism=8",
    )
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == (
        "gpu",
        4,
        4,
    )
    assert (
        launcher.timeout_min,
        launcher.array_parallelism,
        launcher.max_num_timeout,
    ) == (30, 8, 0)
    # submitit's own files go to a dot-folder of the sweep, which the sweep summary skips
    assert launcher.submitit_folder.endswith("/.submitit/%j")


def test_default_launcher_is_unchanged():
    assert _launcher()._target_.endswith("BasicLauncher")


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, plugin",
    [
        (
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            "hydra_plugins.hydra_joblib_launcher",
        ),
        (["hydra/launcher=submitit_local"], "hydra_plugins.hydra_submitit_launcher"),
    ],
    ids=["joblib", "submitit_local"],
)
def test_two_job_sweep_in_other_processes(launcher, plugin, tmp_path, mnist_dir, trained_cnn):
    pytest.importorskip(plugin)
    weights = tmp_path / "cnn.pt"
    torch.save(trained_cnn.state_dict(), weights)
    result = advlab(
        "-m",
        *launcher,
        f"model.checkpoint={weights}",
        "trainer.accelerator=cpu",
        "+trainer.enable_progress_bar=false",
        "data.test_subset=200",
        "logger=none",
        "attack.fgsm.eps=[0.05],[0.3]",
        cwd=tmp_path,
        data_dir=mnist_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [sweep] = (tmp_path / "outputs" / "multirun" / "advlab").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1"]
    accuracy = {}
    for job, eps in zip(jobs, (0.05, 0.3)):
        results = json.loads((job / "results.json").read_text())
        assert results["status"] == "completed"
        [row] = results["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"]
        assert row["eps"] == eps and row["n"] == 200
        accuracy[eps] = row["top1_acc"]
    assert accuracy[0.3] < accuracy[0.05]
    # the summary is written by the launching process once both worker processes are done
    with (sweep / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    fgsm = {row["job"]: row for row in rows if row["attack"] == "fgsm"}
    assert sorted(fgsm) == ["0", "1"]
    assert {row["status"] for row in rows} == {"completed"}
    assert float(fgsm["1"]["top1_acc"]) == pytest.approx(accuracy[0.3])
    assert "2 of 2 jobs completed" in result.stdout
    if "submitit" in plugin:
        assert (sweep / ".submitit").is_dir()
