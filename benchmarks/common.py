"""Shared helpers of the benchmark scripts: medians of repeated runs and the machine."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def interleaved_medians(
    runs: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, list[float]]]:
    """Median seconds of each run, timed round-robin (a, b, c, a, b, c, ...).

    On a shared machine the load drifts over minutes; interleaving spreads that drift
    over every contender instead of charging it to whichever ran last.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), t) for name, t in times.items()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def command() -> str:
    return "python " + " ".join(sys.argv)
