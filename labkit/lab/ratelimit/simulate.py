"""Lab: replay a traffic trace through a limiter, on the real server, faster than time.

The limiter gets a clock that reads the trace's timestamps, so two minutes of
traffic take a fraction of a second and the decisions are the same every run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import redis

from labkit.ratelimit import ALGORITHMS, Limiter

__all__ = ["admitted_per_period", "compare", "peak", "simulate", "traffic"]


def traffic(
    rate: float, seconds: float, *, burstiness: float = 0.0, seed: int = 0
) -> np.ndarray:
    """Arrival times (seconds from 0) of a seeded request stream.

    Args:
        rate: Mean requests per second (> 0).
        seconds: Length of the trace (> 0).
        burstiness: 0 is a Poisson stream; towards 1, requests come in ever
            bigger clumps (mean clump size ``1 / (1 - burstiness)``, spread
            over 0.2 s) with the same mean rate.
        seed: Seeds the generator: the same arguments give the same trace.

    Returns:
        Sorted float64 array of arrival times in ``[0, seconds)``.
    """
    if not rate > 0:
        raise ValueError(f"rate={rate!r}: must be > 0 requests per second")
    if not seconds > 0:
        raise ValueError(f"seconds={seconds!r}: must be > 0")
    if not 0 <= burstiness < 1:
        raise ValueError(f"burstiness={burstiness!r}: must be in [0, 1)")
    rng = np.random.default_rng(seed)
    mean_clump = 1 / (1 - burstiness)
    n_clumps = rng.poisson(rate * seconds / mean_clump)
    starts = rng.uniform(0, seconds, n_clumps)
    sizes = rng.geometric(1 / mean_clump, n_clumps)
    spread = 0.2 if burstiness > 0 else 0.0
    times = np.repeat(starts, sizes) + rng.uniform(0, spread, sizes.sum())
    return np.sort(times[times < seconds])


def simulate(
    client: redis.Redis,
    algorithm: type[Limiter],
    times: Sequence[float] | np.ndarray,
    *,
    limit: int,
    period: float,
    burst: int | None = None,
) -> np.ndarray:
    """Decide every request of a trace on one fresh key; True where admitted.

    The key is deleted afterwards. One round trip per request.
    """
    now = [0.0]
    kwargs: dict[str, Any] = {"burst": burst} if burst is not None else {}
    limiter = algorithm(
        client, limit=limit, period=period, clock=lambda: now[0], **kwargs
    )
    key = f"sim:{uuid.uuid4().hex}"
    out = np.empty(len(times), dtype=bool)
    try:
        for i, t in enumerate(times):
            now[0] = 1_000_000.0 + float(t)  # any fixed origin will do
            out[i] = limiter.allow(key).allowed
    finally:
        limiter.reset(key)
    return out


def admitted_per_period(
    times: Sequence[float] | np.ndarray, allowed: np.ndarray, period: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each admitted request: its time and how many were admitted in the
    ``period`` seconds up to and including it (the trailing count).

    The maximum of the counts is the most any client got through in one
    period, the number a limit promises to cap.
    """
    t = np.asarray(times)[np.asarray(allowed, dtype=bool)]
    # In whole microseconds, as the limiters count: a request admitted at s
    # counts for times in [s, s + period), with no float rounding at the edge.
    us = np.round(t * 1e6).astype(np.int64)
    first = np.searchsorted(us, us - round(period * 1e6), side="right")
    return t, np.arange(1, t.size + 1) - first


def peak(
    times: Sequence[float] | np.ndarray, allowed: np.ndarray, period: float
) -> int:
    """The most requests admitted in any ``period`` seconds of the trace."""
    counts = admitted_per_period(times, allowed, period)[1]
    return int(counts.max()) if counts.size else 0


def compare(
    client: redis.Redis,
    algorithms: Iterable[str],
    *,
    rate: float,
    burstiness: float,
    limit: int,
    period: float,
    seconds: float = 120.0,
    seed: int = 7,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One seeded trace (see :func:`traffic`) replayed through several limiters.

    Args:
        algorithms: Names from ``labkit.ratelimit.ALGORITHMS``; duplicates are
            run once.

    Returns:
        (arrival times, {name: allowed booleans}), in the order given.

    Raises:
        ValueError: An unknown algorithm name, or a bad trace parameter.
    """
    names = list(dict.fromkeys(algorithms))
    for name in names:
        if name not in ALGORITHMS:
            known = ", ".join(ALGORITHMS)
            raise ValueError(f"algorithms: {name!r} is not one of {known}")
    times = traffic(rate, seconds, burstiness=burstiness, seed=seed)
    return times, {
        name: simulate(client, ALGORITHMS[name], times, limit=limit, period=period)
        for name in names
    }
