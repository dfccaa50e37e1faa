"""Lab: replay a traffic trace through a limiter, on the real server, faster than time.

The limiter gets a clock that reads the trace's timestamps, so two minutes of
traffic take a fraction of a second and the decisions are the same every run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import redis

from labkit.core.args import DAY, check_int, check_number, check_seconds
from labkit.ratelimit import ALGORITHMS, Limiter

__all__ = [
    "MAX_REQUESTS",
    "ORIGIN",
    "admitted_per_period",
    "compare",
    "peak",
    "simulate",
    "simulate_many",
    "traffic",
]

#: The most requests a generated trace may hold (its mean; it is a sample).
MAX_REQUESTS = 1_000_000
#: Trace time 0 on the limiters' clock, in seconds since the epoch: a whole
#: number of days (in 2019), so windows aligned on a period that divides a day
#: (1, 10, 30, 60, 3600 s...) start at trace time 0.
ORIGIN = 18_250 * 86_400.0


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
    check_number("rate", rate, min=0, max=1e5, min_open=True, unit="per second")
    check_seconds("seconds", seconds, max=DAY)
    check_number("burstiness", burstiness, min=0, max=0.99)
    if rate * seconds > MAX_REQUESTS:
        raise ValueError(
            f"rate={rate!r}, seconds={seconds!r}: about {rate * seconds:,.0f} "
            f"requests; a trace holds at most {MAX_REQUESTS:,}"
        )
    check_int("seed", seed, min=0, max=2**63 - 1)
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
    skew: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Decide every request of a trace on one fresh key; True where admitted.

    The limiter's clock reads the trace's timestamps, and ``allow_many``
    reads that clock once per request, in order, so the whole trace is
    decided in one round trip (one script call that decides the requests in
    order; one per 1,000 requests of a longer trace). The key is deleted
    afterwards.

    Args:
        times: Arrival times in seconds, sorted.
        skew: Optional per-request error of the requesting client's clock
            (seconds): the limiter is told ``time + skew`` instead of the
            true time, as a client with a wrong clock would tell it.
    """
    skews = None if skew is None else [skew]
    return simulate_many(
        client, algorithm, [times], limit=limit, period=period, burst=burst, skews=skews
    )[0]


def simulate_many(
    client: redis.Redis,
    algorithm: type[Limiter],
    traces: Sequence[Sequence[float] | np.ndarray],
    *,
    limit: int,
    period: float,
    burst: int | None = None,
    skews: Sequence[Sequence[float] | np.ndarray] | None = None,
) -> list[np.ndarray]:
    """:func:`simulate` for several traces, each on its own key, in one round trip."""
    stamps = [np.asarray(t, dtype=float) + ORIGIN for t in traces]
    if skews is not None:
        stamps = [
            s + np.asarray(k, dtype=float) for s, k in zip(stamps, skews, strict=True)
        ]
    kwargs: dict[str, Any] = {"burst": burst} if burst is not None else {}
    flat = np.concatenate(stamps).tolist() if stamps else []
    ticks = iter(flat)
    limiter = algorithm(
        client, limit=limit, period=period, clock=lambda: next(ticks), **kwargs
    )
    keys = [f"sim:{uuid.uuid4().hex}" for _ in stamps]
    try:
        decisions = limiter.allow_many(
            [key for key, s in zip(keys, stamps, strict=True) for _ in range(s.size)]
        )
    finally:
        if keys:
            client.delete(*[limiter.key(key) for key in keys])
    allowed = np.array([d.allowed for d in decisions], dtype=bool)
    bounds = np.cumsum([0] + [s.size for s in stamps])
    return [allowed[a:b] for a, b in pairwise(bounds)]


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
