"""The benchmark scripts are not run by the suite (they take minutes), so an advlab refactor can
break their imports unnoticed (it did once: ``advlab.tables`` moved to ``advlab.reports.tables``).
Each script is imported here and its argument parser run with its defaults."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "timing.py")


def load_script(script: Path, monkeypatch: pytest.MonkeyPatch):
    """Import a benchmark script as a module (fails on an import that no longer exists)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling timing.py
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_script_imports_and_parses_its_defaults(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_script(script, monkeypatch)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
    parse = getattr(module, "parse_args", None)
    if parse is not None:
        args = parse([])
        assert vars(args), f"{script.name}: parse_args([]) gave no options"


def test_the_benchmark_list_is_not_empty() -> None:
    assert {p.stem for p in SCRIPTS} >= {"peer", "fast_paths", "batch1_training"}


def test_peer_fast_layout_and_ceiling_leave_the_model_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torch import nn

    peer = load_script(BENCHMARKS / "peer.py", monkeypatch)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([1, 2])
    fast_model, fast_x = peer.fast_layout(model, x)
    assert fast_model is not model and fast_x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast_x, x) and not x.is_contiguous(memory_format=torch.channels_last)  # copies
    gray = torch.rand(2, 1, 8, 8)
    same_model, same_x = peer.fast_layout(model, gray)
    assert same_model is model and same_x is gray  # 1 channel: nothing to gain, nothing copied
    seconds = peer.input_gradient_seconds(model, x, y, "fp32", rounds=1)
    assert seconds > 0
    assert all(p.requires_grad and p.grad is None for p in model.parameters())  # no weight gradient left


def test_gpu_session_script_parses() -> None:
    """The GPU session script runs only on a lent GPU (its CPU smoke run, ``SMOKE=1``, takes
    minutes): at least its shell syntax is checked here."""
    import subprocess

    script = BENCHMARKS / "gpu_session.sh"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
