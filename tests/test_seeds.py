"""Seeds as an axis: jobs that differ only in ``seed`` become mean ± sample std (n) per result
cell; a failed or absent seed is listed as missing, never dropped in silence; the paper
comparison flags reduced runs."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import eps_results, make_job, read_csv
from omegaconf import OmegaConf

from advlab.errors import AdvlabError
from advlab.reports.cli import SweepReport
from advlab.reports.paper import compare_folders
from advlab.reports.seeds import declared_seeds, write_seeds

# top-1 accuracy at eps 0.1 / 0.3 per (defense, seed); distillation's seed 2 failed
ACC = {
    ("none", "0"): (0.60, 0.10),
    ("none", "1"): (0.70, 0.20),
    ("none", "2"): (0.80, 0.15),
    ("distillation", "0"): (0.90, 0.80),
    ("distillation", "1"): (0.94, 0.86),
}


@pytest.fixture
def seed_sweep(tmp_path: Path) -> Path:
    """`advlab -m defense=none,distillation seed=0,1,2,3`: job folders for seeds 0–2 only (seed 3
    never started), distillation's seed 2 failed."""
    root = tmp_path / "multirun" / "2026-01-01_00-00-00"
    job = 0
    for defense in ("none", "distillation"):
        for seed in ("0", "1", "2"):
            overrides = [f"defense={defense}", f"seed={seed}", "trainer.max_epochs=1"]
            if (defense, seed) in ACC:
                low, high = ACC[(defense, seed)]
                results = eps_results({0.1: low, 0.3: high}, defense=defense, clean=0.97 + 0.01 * int(seed))
            else:
                results = {"status": "failed", "task_name": "t", "error": "RuntimeError: out of memory"}
            make_job(root / str(job), overrides, results)
            job += 1
    sweep = {"hydra": {"overrides": {"task": ["defense=none,distillation", "seed=0,1,2,3", "trainer.max_epochs=1"]}}}
    (root / "multirun.yaml").write_text(OmegaConf.to_yaml(sweep))
    return root


def test_mean_and_sample_std_per_cell_with_missing_seeds_listed(seed_sweep):
    report = write_seeds([seed_sweep])
    rows = read_csv(seed_sweep / "seeds.csv")
    plain = {float(r["eps"]): r for r in rows if r["defense (override)"] == "none" and r["attack"] == "fgsm"}
    distilled = {
        float(r["eps"]): r for r in rows if r["defense (override)"] == "distillation" and r["attack"] == "fgsm"
    }
    for eps, column in ((0.1, 0), (0.3, 1)):
        values = [ACC[("none", s)][column] for s in "012"]
        assert float(plain[eps]["top1_acc"]) == pytest.approx(statistics.mean(values))
        assert float(plain[eps]["top1_acc_std"]) == pytest.approx(statistics.stdev(values))  # n − 1
        assert plain[eps]["top1_acc_n"] == "3"
        values = [ACC[("distillation", s)][column] for s in "01"]
        assert float(distilled[eps]["top1_acc"]) == pytest.approx(statistics.mean(values))
        assert float(distilled[eps]["top1_acc_std"]) == pytest.approx(statistics.stdev(values))
        assert distilled[eps]["top1_acc_n"] == "2"
    # by hand: 0.6, 0.7, 0.8 -> 0.7 ± 0.1; 0.9, 0.94 -> 0.92 ± 0.0283
    assert float(plain[0.1]["top1_acc_std"]) == pytest.approx(0.1)
    assert float(distilled[0.1]["top1_acc_std"]) == pytest.approx(0.02 * 2**0.5)
    clean = next(r for r in rows if r["defense (override)"] == "none" and r["attack"] == "none")
    assert float(clean["top1_acc"]) == pytest.approx(0.98) and float(clean["top1_acc_std"]) == pytest.approx(0.01)
    # seed 3 never ran (declared in multirun.yaml); distillation's seed 2 failed
    assert plain[0.1]["seeds"] == "0,1,2" and plain[0.1]["missing_seeds"] == "3"
    assert distilled[0.1]["seeds"] == "0,1" and distilled[0.1]["missing_seeds"] == "2,3"

    md = (seed_sweep / "seeds.md").read_text()
    assert report.text in md
    assert "70.00 ± 10.00 (n=3)" in md and "92.00 ± 2.83 (n=2)" in md
    assert "- [defense=distillation trainer.max_epochs=1] seed 2: failed: RuntimeError: out of memory" in md
    assert "- [defense=none trainer.max_epochs=1] seed 3: no job folder" in md
    header = next(line for line in md.splitlines() if "top-1 acc %" in line)
    assert "defense (override)" in header and "missing_seeds" in header.replace("missing seeds", "missing_seeds")
    assert (seed_sweep / "seeds_accuracy_vs_eps.png").stat().st_size > 5000


def test_one_seed_cell_has_no_std(tmp_path):
    make_job(tmp_path / "s" / "0", ["seed=0"], eps_results({0.1: 0.5}))
    make_job(tmp_path / "s" / "1", ["seed=1"], {"status": "terminated", "error": "SIGTERM"})
    make_job(tmp_path / "s" / "2", ["seed=2"], {"status": "running", "started": "2026-01-01T00:00:00", "host": "node7"})
    write_seeds([tmp_path / "s"])
    [row] = [r for r in read_csv(tmp_path / "s" / "seeds.csv") if r["attack"] == "fgsm"]
    assert row["top1_acc_std"] == "" and row["top1_acc_n"] == "1" and row["missing_seeds"] == "1,2"
    md = (tmp_path / "s" / "seeds.md").read_text()
    assert "50.00 (n=1)" in md and "seed 1: terminated: SIGTERM" in md
    assert "seed 2: running: still running, or killed without a trace (started 2026-01-01T00:00:00, host node7)" in md


def test_seeds_pool_several_sweeps(tmp_path):
    for seed, acc in ((0, 0.2), (1, 0.4)):
        make_job(tmp_path / "a" / str(seed), [f"seed={seed}"], eps_results({0.3: acc}))
    make_job(tmp_path / "b" / "0", ["seed=2"], eps_results({0.3: 0.9}))
    write_seeds([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    [row] = [r for r in read_csv(tmp_path / "out" / "seeds.csv") if r["attack"] == "fgsm"]
    assert float(row["top1_acc"]) == pytest.approx(0.5) and row["top1_acc_n"] == "3" and row["missing_seeds"] == ""
    with pytest.raises(AdvlabError, match="--out"):
        write_seeds([tmp_path / "a", tmp_path / "b"])


def test_declared_seeds():
    assert declared_seeds(["model=a,b", "seed=0,1,2"]) == {"0", "1", "2"}
    assert declared_seeds(["+seed=range(0,3)"]) == {"0", "1", "2"}
    assert declared_seeds(["model=a"]) == set()


def test_sweep_callback_writes_the_seed_table_when_seeds_are_swept(seed_sweep, capsys):
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(seed_sweep)}}}))
    out = capsys.readouterr().out
    assert "Sweep summary" in out and "Over seeds" in out and "70.00 ± 10.00 (n=3)" in out
    assert (seed_sweep / "summary.md").is_file() and (seed_sweep / "seeds.md").is_file()


def test_no_seed_table_without_a_seed_sweep(tmp_path):
    make_job(tmp_path / "s" / "0", ["trainer.max_epochs=1"], eps_results({0.1: 0.5}))
    make_job(tmp_path / "s" / "1", ["trainer.max_epochs=2"], eps_results({0.1: 0.6}))
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "s")}}}))
    assert (tmp_path / "s" / "summary.md").is_file() and not (tmp_path / "s" / "seeds.md").exists()


def paper_run(folder: Path, seed: int, n: int, epochs: int, acc: float) -> None:
    results = eps_results({0.0: 0.97, 0.2: acc, 0.3: acc / 2})
    for row in results["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"]:
        row["n"] = n
    results["models"]["undefended"]["training"] = {"trained": True, "epochs": epochs}
    make_job(folder, [f"seed={seed}"], results)


def test_paper_comparison_flags_a_reduced_run_and_averages_seeds(tmp_path):
    paper_run(tmp_path / "small", 0, 300, 1, 0.4)
    text = compare_folders([tmp_path / "small" / "results.json"])
    assert "**Reduced run**: 300 of the paper's 10000 test images and 1 of its 10 training epochs" in text
    assert "54.05" in text and "50.06" in text  # the paper's and the public run's eps 0.2

    for seed, acc in enumerate((0.50, 0.54, 0.52)):
        paper_run(tmp_path / "full" / str(seed), seed, 10_000, 10, acc)
    text = compare_folders([tmp_path / "full"])
    assert "Paper-sized run: 10000 test images, 10 training epochs." in text and "Reduced" not in text
    assert "52.00 ± 2.00 (n=3)" in text and "3 seed(s) (0, 1, 2)" in text

    paper_run(tmp_path / "full" / "3", 3, 10_000, 5, 0.5)
    make_job(tmp_path / "mixed" / "0", ["trainer.max_epochs=5"], eps_results({0.2: 0.5}))
    make_job(tmp_path / "mixed" / "1", ["trainer.max_epochs=9"], eps_results({0.2: 0.5}))
    with pytest.raises(AdvlabError, match="2 different configurations"):
        compare_folders([tmp_path / "mixed"])
    assert "Reduced run**: 5/10 of its 10 training epochs" in compare_folders([tmp_path / "full"])


def report_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(
        [sys.executable, "-m", "advlab.reports.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_subcommands(seed_sweep, tmp_path):
    seeds = report_cli("seeds", str(seed_sweep))
    assert seeds.returncode == 0, seeds.stderr
    assert "70.00 ± 10.00 (n=3)" in seeds.stdout and f"seeds_md: {seed_sweep / 'seeds.md'}" in seeds.stdout
    summary = report_cli("summary", str(seed_sweep))
    assert summary.returncode == 0 and "5 of 6 jobs completed" in summary.stdout
    paper = report_cli("paper", str(seed_sweep))
    assert paper.returncode == 2 and paper.stderr.startswith("advlab-report: error: the folders hold 2 different")
    missing = report_cli("seeds", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
