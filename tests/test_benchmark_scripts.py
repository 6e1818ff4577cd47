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


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_script_imports_and_parses_its_defaults(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling timing.py
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # fails on an import that no longer exists
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
    parse = getattr(module, "parse_args", None)
    if parse is not None:
        args = parse([])
        assert vars(args), f"{script.name}: parse_args([]) gave no options"


def test_the_benchmark_list_is_not_empty() -> None:
    assert {p.stem for p in SCRIPTS} >= {"peer", "fast_paths", "batch1_training"}
