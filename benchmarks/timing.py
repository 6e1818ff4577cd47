"""Shared timing for the benchmarks: ``torch.utils.benchmark.Timer`` runs, interleaved between
the things compared, so a machine whose speed drifts (a shared CPU, a GPU warming up) slows
every contender alike, and the ratio is taken round by round."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping

import torch
from torch.utils import benchmark


def publish(text: str, out: str | None) -> str:
    """Print a benchmark's report and, with ``--out``, write it atomically (advlab.io)."""
    from advlab.io import write_text

    print("\n" + text)
    if out:
        write_text(out, text)
    return text


def load_note() -> str:
    """The 1-minute load average against the core count: on a shared machine it says how much
    of the CPU the measurement had."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} cores"


def seconds_per_call(
    steps: Mapping[str, Callable[[], object]],
    rounds: int,
    number: int = 1,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """``{name: [seconds per call, one per round]}``: each round times every step once
    (``number`` calls each, after ``warmup`` untimed calls before the first round).
    ``Timer`` synchronizes CUDA around each measurement."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    timers = {
        name: benchmark.Timer(
            stmt="step()",
            globals={"step": step},
            num_threads=torch.get_num_threads(),
            label=name,
        )
        for name, step in steps.items()
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, timer in timers.items():
            times[name].append(timer.timeit(number).mean)
    return times


def ratio(times: Mapping[str, list[float]], slow: str, fast: str) -> tuple[float, float, float]:
    """``(median, min, max)`` over the rounds of ``time[slow] / time[fast]``: how many times
    faster ``fast`` ran, round by round."""
    per_round = [s / f for s, f in zip(times[slow], times[fast])]
    return statistics.median(per_round), min(per_round), max(per_round)
