"""Measuring variants: latency per batch size with the variants taking turns (ratios are per round, then the median:
a shared machine's slow spells hit every variant alike), and the process's peak resident memory.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Inputs = dict[str, np.ndarray]
Runner = Callable[[Inputs], np.ndarray]
HIGH_WATER = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def batch_of(inputs: Inputs, size: int) -> Inputs:
    """The first `size` rows, cycling through the rows when there are fewer."""
    rows = len(next(iter(inputs.values())))
    index = np.arange(size) % max(rows, 1)
    return {name: np.ascontiguousarray(array[index]) for name, array in inputs.items()}


def _time(run: Runner, batch: Inputs, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        run(batch)
    return (time.perf_counter() - started) / repeats


def latencies(runners: dict[str, Runner], inputs: Inputs, batch_sizes: list[int], baseline: str, *,
              rounds: int = 5, seconds_per_turn: float = 0.05) -> tuple[dict[str, dict[int, float]],
                                                                        dict[str, dict[int, float]]]:
    """Per runner and batch size: the median seconds per call, and the median of the per-round ratios to `baseline`.

    Each round times every runner in turn on the same batch; the number of calls per turn is set once per batch size
    from the baseline's warm call, so a turn lasts about `seconds_per_turn`.
    """
    seconds: dict[str, dict[int, float]] = {name: {} for name in runners}
    ratios: dict[str, dict[int, float]] = {name: {} for name in runners}
    for size in batch_sizes:
        batch = batch_of(inputs, size)
        for run in runners.values():  # warm-up: first-call set-up (allocations, compilation) is not latency
            run(batch)
            run(batch)
        once = max(_time(runners[baseline], batch, 1), 1e-6)
        repeats = max(1, min(1000, int(seconds_per_turn / once)))
        turns: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, run in runners.items():
                turns[name].append(_time(run, batch, repeats))
        for name in runners:
            seconds[name][size] = statistics.median(turns[name])
            ratios[name][size] = statistics.median(t / b for t, b in zip(turns[name], turns[baseline], strict=True))
    return seconds, ratios


def reset_peak_memory() -> bool:
    """Reset the kernel's resident high-water mark of this process (Linux); False where it cannot."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_memory() -> int | None:
    """The process's peak resident memory in bytes since the last reset (VmHWM), or None off Linux."""
    try:
        for line in HIGH_WATER.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
