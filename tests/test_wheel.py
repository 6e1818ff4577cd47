"""The package as a user installs it: a wheel built from the sources, installed into a fresh
virtual environment, runs ``advlab --help`` and a tiny job from an unrelated folder.

The fresh environment borrows the test interpreter's installed dependencies through a ``.pth``
file (no download, no network); advlab itself comes only from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import QUICK, ROOT


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_wheel_runs_help_and_a_job_from_an_unrelated_folder(tmp_path, mnist_dir):
    # Build from a copy of what the wheel is made of, so the checkout gets no build/ or egg-info.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "advlab", source / "advlab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        tmp_path / "dist",
        source,
    )
    [wheel] = (tmp_path / "dist").glob("advlab-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    borrowed = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "borrowed_deps.pth").write_text("\n".join(borrowed) + "\n")  # torch, hydra, … and pip
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ADVLAB_ROOT")}
    env["ADVLAB_DATA_DIR"] = str(mnist_dir)
    where = _run(python, "-c", "import advlab; print(advlab.__file__)", cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv)

    help_text = _run(venv / "bin" / "advlab", "--help", cwd=elsewhere, env=env).stdout
    assert "experiment: " in help_text and "paper_mnist_fgsm" in help_text

    _run(venv / "bin" / "advlab", *QUICK, "logger=none", "attack.fgsm.eps=[0.1]", cwd=elsewhere, env=env)
    [results] = (elsewhere / "outputs" / "runs" / "advlab").glob("*/results.json")
    record = json.loads(results.read_text())
    assert record["status"] == "completed" and record["code_version"] is None  # not a checkout
    assert record["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"][0]["eps"] == 0.1
