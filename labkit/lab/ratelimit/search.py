"""Lab: search arrival times for the most a limiter admits in one period.

A limit's promise is about the worst case, and the worst case is hard to
guess: this searches for it. Several hill-climbing chains each hold a trace of
arrival times; every step mutates each chain's trace once (move one request
anywhere, next to another, a little, or shift a block of requests), replays
all the candidates through the real limiter in one round trip
(:func:`~labkit.lab.ratelimit.simulate.simulate_many`), and keeps a candidate
whose peak (the most admitted in any ``period``) is at least its chain's.
The search knows nothing about the algorithm; what it finds is a lower bound
on the true worst case, reached by a real trace that can be replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import redis

from labkit.core.args import check_count, check_int, check_seconds
from labkit.lab.ratelimit.simulate import peak, simulate_many
from labkit.ratelimit import MAX_PERIOD, Limiter

__all__ = ["WorstCase", "worst_case"]


class WorstCase(NamedTuple):
    """What a search found.

    Attributes:
        peak: The most requests admitted in any ``period`` of ``times``.
        times: The arrival times (seconds, sorted) that reach it.
        allowed: The limiter's decision for each of them.
        steps: Steps taken (the search stops early at ``stop_at``).
        history: The best peak over all chains after each step (step 0 first).
    """

    peak: int
    times: np.ndarray
    allowed: np.ndarray
    steps: int
    history: list[int]


def _mutate(
    rng: np.random.Generator, times: np.ndarray, span: float, period: float
) -> np.ndarray:
    cand = times.copy()
    i = rng.integers(cand.size)
    kind = rng.integers(4)
    if kind == 0:  # anywhere
        cand[i] = rng.uniform(0, span)
    elif kind == 1:  # next to another request
        cand[i] = cand[rng.integers(cand.size)] + rng.normal(0, period / 50)
    elif kind == 2:  # a little
        cand[i] += rng.normal(0, period / 10)
    else:  # a block of requests, together
        start, width = rng.uniform(0, span), rng.uniform(0, period)
        block = (cand >= start) & (cand < start + width)
        cand[block] += rng.normal(0, period / 10)
    return np.sort(np.clip(cand, 0, span))


def worst_case(
    client: redis.Redis,
    algorithm: type[Limiter],
    *,
    limit: int,
    period: float,
    burst: int | None = None,
    requests: int | None = None,
    chains: int = 16,
    steps: int = 300,
    stop_at: int | None = None,
    start: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
) -> WorstCase:
    """Hill-climb arrival times towards the most ``algorithm`` admits in a period.

    Args:
        limit, period, burst: The limiter's settings.
        requests: Requests per trace (default ``2 * (limit + burst)``), spread
            over ``3 * period`` seconds.
        chains: Independent traces improved side by side (one round trip per
            step for all of them).
        steps: The most steps to take.
        stop_at: Stop as soon as a chain reaches this peak (None: take every
            step, so a trace past a claimed bound would be found and kept).
        start: Arrival times every chain starts from (seconds in
            ``[0, 3 * period]``; it sets ``requests``), e.g. a paced trace far
            from any worst case; default: a random trace per chain.
        seed: Seeds the start and every mutation: same arguments, same result.
    """
    check_count("limit", limit)
    check_seconds("period", period, min=0.001, max=MAX_PERIOD, min_open=False)
    capacity = burst if burst is not None else limit
    span = 3 * period
    first = None if start is None else np.sort(np.asarray(start, dtype=float))
    if first is not None and (first.size == 0 or first[0] < 0 or first[-1] > span):
        raise ValueError(f"start: want arrival times in [0, {span:g}] s, got {start!r}")
    if first is not None:
        wanted = first.size
    elif requests is not None:
        wanted = requests
    else:
        wanted = 2 * (limit + capacity)
    n = check_count("requests", wanted, max=10_000)
    check_int("chains", chains, min=1, max=256)
    check_int("steps", steps, min=0, max=100_000)
    rng = np.random.default_rng(seed)

    def score(traces: list[np.ndarray]) -> tuple[list[int], list[np.ndarray]]:
        ok = simulate_many(
            client, algorithm, traces, limit=limit, period=period, burst=burst
        )
        return [peak(t, a, period) for t, a in zip(traces, ok, strict=True)], ok

    if first is not None:
        current = [first.copy() for _ in range(chains)]
    else:
        current = [np.sort(rng.uniform(0, span, n)) for _ in range(chains)]
    scores, allowed = score(current)
    history = [max(scores)]
    step = 0
    while step < steps and not (stop_at is not None and max(scores) >= stop_at):
        step += 1
        candidates = [_mutate(rng, t, span, period) for t in current]
        new_scores, new_allowed = score(candidates)
        for k, p in enumerate(new_scores):
            if p >= scores[k]:  # sideways moves too: plateaus are wide
                current[k], scores[k], allowed[k] = candidates[k], p, new_allowed[k]
        history.append(max(scores))
    best = int(np.argmax(scores))
    return WorstCase(scores[best], current[best], allowed[best], step, history)
