"""Timing: warmed-up perf_counter_ns loops, interleaved in blocks, and their median / p90 / p99."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Figure = dict[str, Any]  # {"unit", "median", "p90", "p99", "n"}
Call = Callable[[int], object]  # called with the iteration number (to cycle through inputs)
BLOCK = 20  # consecutive calls of one callable per turn


def summarize(samples: Sequence[float], unit: str = "ms") -> Figure:
    median, p90, p99 = np.percentile(np.asarray(samples, dtype=np.float64), [50, 90, 99])
    return {"unit": unit, "median": float(median), "p90": float(p90), "p99": float(p99), "n": len(samples)}


def time_interleaved(calls: Mapping[str, Call], repeat: int, warmup: int, block: int = BLOCK) -> dict[str, list[float]]:
    """Milliseconds per call of each callable, ``repeat`` calls each: the callables take turns in blocks of ``block``
    consecutive calls, so a noisy neighbour hits all alike while each runs as it would in steady use. (Turns of one
    call each measured the caches, not the callable: after a brute-force pass over 1M products, ScaNN's next search
    found nothing cached and took 2-4x its steady time.)"""
    for i in range(warmup):
        for call in calls.values():
            call(i)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    gc.collect()
    for first in range(0, repeat, block):
        for name, call in calls.items():
            for i in range(first, min(first + block, repeat)):
                start = time.perf_counter_ns()
                call(i)
                samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def measure(calls: Mapping[str, Call], repeat: int, warmup: int) -> dict[str, Figure]:
    return {name: summarize(s) for name, s in time_interleaved(calls, repeat, warmup).items()}


def ratio(slow: Figure, fast: Figure) -> float:
    """How many times faster ``fast`` is than ``slow``, by medians."""
    return float(slow["median"] / fast["median"]) if fast["median"] > 0 else float("inf")
