"""Lab: timing helpers for notebooks and benchmarks: samples, percentiles, ratios.

Every number the lab prints is measured by these helpers in the same run as the
number it is compared with. Durations come from ``time.perf_counter()``;
samples are returned in **seconds**, summaries in **milliseconds**.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from labkit.core.wait import wait_until  # re-exported: the notebooks' bounded wait

__all__ = ["Summary", "compare_rates", "rate", "summarize", "time_calls", "wait_until"]


class Summary(NamedTuple):
    """Latency percentiles of a set of samples.

    Attributes:
        n: Number of samples.
        p50_ms, p95_ms, p99_ms: Percentiles, in milliseconds.
        mean_ms: Mean, in milliseconds.
    """

    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float

    def __str__(self) -> str:
        return (
            f"n={self.n} p50={self.p50_ms:.3f} ms p95={self.p95_ms:.3f} ms "
            f"p99={self.p99_ms:.3f} ms"
        )


def time_calls(fn: Callable[[], Any], n: int = 1000, *, warmup: int = 20) -> np.ndarray:
    """Call ``fn()`` ``n`` times and return each call's duration in seconds.

    Args:
        fn: The operation to time, taking no arguments.
        n: Number of timed calls (must be >= 1).
        warmup: Untimed calls made first (connection set-up, caches).

    Returns:
        A float64 array of ``n`` durations, in seconds.
    """
    if n < 1:
        raise ValueError(f"n={n!r}: need at least one timed call")
    if warmup < 0:
        raise ValueError(f"warmup={warmup!r}: must be >= 0")
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    clock = time.perf_counter
    for i in range(n):
        start = clock()
        fn()
        out[i] = clock() - start
    return out


def summarize(samples: Iterable[float]) -> Summary:
    """Percentiles (in ms) of duration samples given in seconds."""
    arr = np.asarray(list(samples) if not isinstance(samples, np.ndarray) else samples)
    if arr.size == 0:
        raise ValueError("samples is empty: nothing to summarize")
    ms = arr * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Summary(int(arr.size), float(p50), float(p95), float(p99), float(ms.mean()))


def rate(
    fn: Callable[[], Any], *, seconds: float = 1.0, ops_per_call: int = 1
) -> float:
    """Operations per second achieved by calling ``fn`` repeatedly for ``seconds``.

    Args:
        fn: One call; it performs ``ops_per_call`` operations (e.g. a pipeline).
        seconds: How long to keep calling (wall time, at least one call).
        ops_per_call: Operations each call stands for.
    """
    if seconds <= 0:
        raise ValueError(f"seconds={seconds!r}: must be > 0")
    clock = time.perf_counter
    calls = 0
    start = clock()
    deadline = start + seconds
    while True:
        fn()
        calls += 1
        now = clock()
        if now >= deadline:
            break
    return calls * ops_per_call / (now - start)


def compare_rates(
    ops: Mapping[str, Callable[[], Any] | tuple[Callable[[], Any], int]],
    *,
    seconds: float = 1.0,
    rounds: int = 5,
) -> dict[str, float]:
    """Operations per second of several operations, measured interleaved.

    Each round runs every operation for ``seconds / rounds``; the result per
    operation is its median over the rounds. Interleaving means a burst of
    load from elsewhere on the machine hits every operation alike, so the
    *ratios* between them stay meaningful even when absolute rates wobble.

    Args:
        ops: ``{label: fn}`` or ``{label: (fn, ops_per_call)}``.
        seconds: Total time per operation.
        rounds: Number of interleaved rounds (>= 1).
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds!r}: must be >= 1")
    samples: dict[str, list[float]] = {label: [] for label in ops}
    for _ in range(rounds):
        for label, spec in ops.items():
            fn, per_call = spec if isinstance(spec, tuple) else (spec, 1)
            samples[label].append(
                rate(fn, seconds=seconds / rounds, ops_per_call=per_call)
            )
    return {label: float(np.median(v)) for label, v in samples.items()}
