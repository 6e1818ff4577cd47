"""``advlab-report``: sweep summaries (summary.csv / summary.md / plots), failed and missing jobs,
generic result columns, sweeps side by side, clear errors on empty or foreign folders, and the
Hydra callback at the end of a real ``advlab -m`` sweep."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUICK
from helpers import eps_results, make_job, read_csv

from advlab.errors import AdvlabError
from advlab.reports.jobs import parse_override
from advlab.reports.summary import write_summary

COMMON = ["trainer.max_epochs=1", "+trainer.enable_progress_bar=false"]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Job 0 completed (eps 0.1, 0.3), job 1 failed, job 2 never wrote results, job 10 completed
    (eps 0.2): numeric order, not 0, 1, 10, 2."""
    root = tmp_path / "multirun" / "2026-01-01_00-00-00"
    make_job(root / "0", [*COMMON, "attack.fgsm.eps=[0.1,0.3]"], eps_results({0.1: 0.6, 0.3: 0.1}))
    make_job(
        root / "1",
        [*COMMON, "attack.fgsm.eps=[-1]"],
        {"status": "failed", "task_name": "t", "error": "AdvlabError: eps must be >= 0, got -1"},
    )
    make_job(root / "2", [*COMMON, "attack.fgsm.eps=[0.5]"], None)
    make_job(root / "10", [*COMMON, "attack.fgsm.eps=[0.2]"], eps_results({0.2: 0.3}))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_summary_keeps_every_completed_row_beside_failed_and_missing_jobs(sweep):
    report = write_summary([sweep])
    rows = read_csv(sweep / "summary.csv")
    assert [r["job"] for r in rows] == ["0", "0", "0", "1", "2", "10", "10"]
    assert [r["status"] for r in rows] == ["completed"] * 3 + ["failed", "missing"] + ["completed"] * 2
    assert [r["attack"] for r in rows if r["job"] == "0"] == ["none", "fgsm", "fgsm"]
    assert [float(r["eps"]) for r in rows if r["attack"] == "fgsm"] == [0.1, 0.3, 0.2]
    assert [float(r["top1_acc"]) for r in rows if r["attack"] == "fgsm"] == [0.6, 0.1, 0.3]
    # overrides are columns, with the "+" of an appended key dropped
    assert {r["attack.fgsm.eps"] for r in rows} == {"[0.1,0.3]", "[-1]", "[0.5]", "[0.2]"}
    assert {r["trainer.enable_progress_bar"] for r in rows} == {"false"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error"] == "AdvlabError: eps must be >= 0, got -1" and failed["top1_acc"] == ""
    missing = next(r for r in rows if r["status"] == "missing")
    assert "no results.json" in missing["error"] and "attack.fgsm.eps=[0.5]" in missing["overrides"]

    md = (sweep / "summary.md").read_text()
    assert "2 of 4 jobs completed" in md
    header = md.splitlines()[4]
    # the swept override is a column, the ones every job shares and the constant settings are not
    assert "attack.fgsm.eps" in header and "trainer.max_epochs" not in header and "clamp" not in header
    assert "top-1 acc %" in header and "60.00" in md
    assert "- 1: failed: AdvlabError: eps must be >= 0, got -1 [attack.fgsm.eps=[-1]]" in md
    assert "- 2: missing: no results.json" in md
    assert report.text in md
    for name in ("summary_accuracy_vs_eps.png", "summary_error_vs_eps.png"):
        assert (sweep / name).stat().st_size > 5000, name


def test_unreadable_results_json_is_listed_and_the_rest_reported(sweep):
    (sweep / "10" / "results.json").write_text('{"status": "compl')  # a torn write by something else
    write_summary([sweep])
    rows = read_csv(sweep / "summary.csv")
    assert next(r for r in rows if r["job"] == "10")["status"] == "unreadable"
    assert sum(r["status"] == "completed" for r in rows) == 3


def test_a_single_run_folder_is_a_one_job_report(sweep):
    report = write_summary([sweep / "0"])
    assert [job.label for job in report.jobs] == ["0"]
    assert (sweep / "0" / "summary.csv").is_file()


def test_generic_columns_patch_and_cw_rows(tmp_path):
    """Rows of other attacks carry other columns: the report keeps them all and plots patch
    success against patch size, one line per target class."""
    results = eps_results({0.1: 0.5})
    attacks = results["models"]["undefended"]["evaluation"]["attacks"]
    attacks["patch"] = {
        "settings": {"attack": "patch", "steps": 50},
        "rows": [
            {"patch_size": size, "target": target, "n": 100, "top1_rate": rate, "top5_rate": min(1.0, rate + 0.1)}
            for target, base in (("toaster", 0.2), ("banana", 0.1))
            for size, rate in ((0.05, base), (0.1, 2 * base), (0.2, 4 * base))
        ],
    }
    attacks["cw"] = {
        "settings": {"attack": "cw", "confidence": 0.0},
        "rows": [{"eps": None, "n": 100, "success_rate": 0.97, "median_l2": 1.4}],
    }
    make_job(tmp_path / "run", [], results)
    report = write_summary([tmp_path / "run"])
    rows = read_csv(tmp_path / "run" / "summary.csv")
    patch = [r for r in rows if r["attack"] == "patch"]
    assert len(patch) == 6 and {r["target"] for r in patch} == {"toaster", "banana"}
    assert [float(r["top1_rate"]) for r in patch[:3]] == [0.2, 0.4, 0.8]
    cw = next(r for r in rows if r["attack"] == "cw")
    assert float(cw["success_rate"]) == 0.97 and float(cw["median_l2"]) == 1.4
    for column in ("patch size", "target", "top-1 rate %", "success rate %", "median L2"):
        assert column in report.text, column
    assert (tmp_path / "run" / "summary_patch_success_vs_patch_size.png").stat().st_size > 5000


def test_two_sweeps_side_by_side(tmp_path):
    plain = tmp_path / "undefended" / "2026-01-01_00-00-00"
    distilled = tmp_path / "distilled" / "2026-01-01_00-00-00"
    for i, eps in enumerate((0.1, 0.3)):
        make_job(plain / str(i), [f"attack.fgsm.eps=[{eps}]"], eps_results({eps: 0.5 - eps}))
        make_job(
            distilled / str(i),
            [f"attack.fgsm.eps=[{eps}]"],
            eps_results({eps: 0.9 - eps}, model="student", defense="distillation"),
        )
    with pytest.raises(AdvlabError, match="--out"):
        write_summary([plain, distilled])
    out = tmp_path / "compare"
    report = write_summary([plain, distilled], out)
    rows = read_csv(out / "summary.csv")
    assert {r["sweep"] for r in rows} == {"undefended/2026-01-01_00-00-00", "distilled/2026-01-01_00-00-00"}
    student = [float(r["top1_acc"]) for r in rows if r["model"] == "student" and r["attack"] == "fgsm"]
    assert student == pytest.approx([0.8, 0.6])
    assert "sweep" in report.text.splitlines()[2]
    assert (out / "summary_accuracy_vs_eps.png").is_file()
    assert not (plain / "summary.csv").exists()


def test_group_overrides_do_not_overwrite_result_columns(tmp_path):
    """`defense=none,distillation` names a config group and the rows have a `defense` column:
    both stay, the override as `defense (override)`, and the plot has a line per defense."""
    make_job(tmp_path / "s" / "0", ["defense=none"], eps_results({0.1: 0.4, 0.3: 0.1}))
    make_job(
        tmp_path / "s" / "1",
        ["defense=distillation"],
        eps_results({0.1: 0.8, 0.3: 0.6}, model="student", defense="distillation"),
    )
    make_job(
        tmp_path / "s" / "2", ["defense=broken"], {"status": "failed", "error": "AdvlabError: unknown defense 'broken'"}
    )
    report = write_summary([tmp_path / "s"])
    rows = read_csv(tmp_path / "s" / "summary.csv")
    assert [(r["defense (override)"], r["defense"], r["model"]) for r in rows if r["attack"] == "fgsm"][::2] == [
        ("none", "none", "undefended"),
        ("distillation", "distillation", "student"),
    ]
    assert "defense (override)" in report.text.splitlines()[2]
    assert "- 2: failed: AdvlabError: unknown defense 'broken' [defense=broken]" in report.text


def test_override_parsing():
    assert parse_override("+trainer.max_epochs=2") == ("trainer.max_epochs", "2")
    assert parse_override("++a.b=x=y") == ("a.b", "x=y")
    assert parse_override("~logger") == ("logger", "~")
    assert parse_override("attack=[fgsm,pgd]") == ("attack", "[fgsm,pgd]")


def report_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(
        [sys.executable, "-m", "advlab.reports.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_on_empty_foreign_and_missing_folders_says_so_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("not a run")
    (foreign / "sub" / "data.json").write_text("{}")
    for folder, message in (
        (empty, "is empty"),
        (foreign, "holds no advlab runs (no results.json or .hydra/ in it or its subfolders)"),
        (tmp_path / "nowhere", "does not exist"),
    ):
        result = report_cli(str(folder))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"advlab-report: error: {folder} {message}")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert not (folder / "summary.csv").exists()


def test_cli_prints_the_table_and_the_files(sweep):
    result = report_cli(str(sweep))
    assert result.returncode == 0, result.stderr
    assert "2 of 4 jobs completed" in result.stdout and re.search(r"^\|\s+job \|", result.stdout, re.M)
    assert f"summary_csv: {sweep / 'summary.csv'}" in result.stdout


def test_multirun_ends_with_a_summary_of_every_job(tmp_path, mnist_dir):
    """A real 3-job sweep: two complete, one fails on bad input. The Hydra callback writes the
    summary; the failed job is listed with its overrides, the others keep their rows."""
    env = {**os.environ, "ADVLAB_ROOT": str(tmp_path), "ADVLAB_DATA_DIR": str(mnist_dir), "HYDRA_FULL_ERROR": "0"}
    small = [
        "data.train_subset=256",
        "data.val_subset=64",
        "data.test_subset=100",
        "data.eval_batch_size=100",
        "evaluation.example_count=2",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "advlab", "-m", *QUICK, *small, "attack.fgsm.eps=[0.1],[0.3],[-1]"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-2000:]  # a job failed on bad input
    [sweep] = (tmp_path / "outputs" / "multirun" / "advlab").iterdir()
    rows = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["status"], r["attack"]) for r in rows] == [
        ("0", "completed", "none"),
        ("0", "completed", "fgsm"),
        ("1", "completed", "none"),
        ("1", "completed", "fgsm"),
        ("2", "failed", ""),
    ]
    for row, job in zip((rows[1], rows[3]), ("0", "1")):
        on_disk = json.loads((sweep / job / "results.json").read_text())
        [expected] = on_disk["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"]
        assert float(row["eps"]) == expected["eps"] and float(row["top1_acc"]) == pytest.approx(expected["top1_acc"])
    assert rows[4]["attack.fgsm.eps"] == "[-1]" and "eps must be >= 0, got -1" in rows[4]["error"]
    md = (sweep / "summary.md").read_text()
    assert "2 of 3 jobs completed" in md and "- 2: failed: AdvlabError: eps must be >= 0, got -1" in md
    assert "[attack.fgsm.eps=[-1]]" in md
    assert "Sweep summary" in result.stdout and "2 of 3 jobs completed" in result.stdout
    assert (sweep / "summary_accuracy_vs_eps.png").is_file()
