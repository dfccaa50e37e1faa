"""The caching notebook's experiments: a stampede at expiry, eviction under Zipf.

Each function runs one bounded trial against a real server and returns plain
numbers; the notebook and the benchmark call them in loops and plot them.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, NamedTuple

import numpy as np
import redis

from labkit.cache._aside import Cache

__all__ = [
    "EvictionResult",
    "eviction_trial",
    "stampede_trial",
    "ttl_trace",
    "zipf_keys",
]


def stampede_trial(
    client: Any,
    stampede: str,
    readers: int,
    *,
    load_seconds: float = 0.02,
    ttl: float = 0.25,
    think: float = 0.002,
    seed: int = 0,
) -> int:
    """Count origin calls when one hot key expires under ``readers`` threads.

    The key is loaded once, then ``readers`` threads read it in a loop (a
    ``think`` pause between reads) from before its expiry until ``3 *
    load_seconds`` after it. The loader sleeps ``load_seconds``, standing in
    for the origin.

    Returns:
        Loads made for that one expiry (the priming load not counted). With
        ``"none"`` it grows with ``readers``; with ``"lock"`` it is 1; with
        ``"xfetch"`` the reload usually happens before expiry.
    """
    if readers < 1:
        raise ValueError(f"readers={readers!r}: expected an int >= 1")
    cache = Cache(
        client,
        f"stampede-{stampede}",
        ttl=ttl,
        stampede=stampede,
        rng=random.Random(seed),
        poll_interval=0.002,
    )
    cache.invalidate("hot")

    def origin() -> int:
        time.sleep(load_seconds)
        return 42

    cache.get_or_load("hot", origin)
    stop = time.monotonic() + ttl + 3 * load_seconds
    barrier = threading.Barrier(readers)

    def reader() -> None:
        barrier.wait()
        while time.monotonic() < stop:
            cache.get_or_load("hot", origin)
            time.sleep(think)

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.invalidate("hot")
    return cache.stats.loads - 1


def ttl_trace(
    cache: Cache,
    key: str,
    loader: Any,
    *,
    duration: float = 1.0,
    step: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``key`` every ``step`` seconds for ``duration``; watch it expire.

    Returns:
        Three arrays, one entry per read: seconds since the start, the
        entry's remaining TTL in ms just before the read (0 once expired),
        and the loads (origin calls) made so far, after the read.
    """
    if step <= 0 or duration < step:
        raise ValueError(
            f"step={step!r}, duration={duration!r}: need 0 < step <= duration"
        )
    start = time.monotonic()
    base = cache.stats.loads
    times, ttls, loads = [], [], []
    for i in range(int(duration / step)):
        time.sleep(max(0.0, start + i * step - time.monotonic()))
        times.append(time.monotonic() - start)
        ttls.append(max(0, cache.client.pttl(cache.key(key))))
        cache.get_or_load(key, loader)
        loads.append(cache.stats.loads - base)
    return np.array(times), np.array(ttls), np.array(loads)


def zipf_keys(
    n_keys: int, n_requests: int, *, s: float = 1.0, seed: int = 7
) -> np.ndarray:
    """``n_requests`` key ids drawn from a Zipf law over ``n_keys`` (rank 0 hottest).

    Unlike ``numpy``'s unbounded ``zipf``, the support is finite:
    P(rank k) is proportional to 1 / (k + 1) ** s.
    """
    weights = 1.0 / np.arange(1, n_keys + 1) ** s
    rng = np.random.default_rng(seed)
    return rng.choice(n_keys, size=n_requests, p=weights / weights.sum())


class EvictionResult(NamedTuple):
    """One eviction trial.

    Attributes:
        policy: The ``maxmemory-policy``.
        hit_ratio: Hits / requests over the second half of the workload.
        evicted: ``evicted_keys`` from INFO.
        write_errors: SETs refused with an out-of-memory error.
    """

    policy: str
    hit_ratio: float
    evicted: int
    write_errors: int


def eviction_trial(
    client: Any,
    policy: str,
    requests: np.ndarray,
    *,
    budget_bytes: int = 512_000,
    value_bytes: int = 1000,
    batch: int = 200,
) -> EvictionResult:
    """Replay ``requests`` as cache-aside reads under ``maxmemory`` + ``policy``.

    Sets ``maxmemory`` to the memory in use plus ``budget_bytes`` (so the
    server's own overhead does not count), flushes, then for each batch of
    requests: ``MGET`` them, ``SET`` the missing ones (values of
    ``value_bytes``). Hit ratio is measured on the second half, once warm.
    The config is restored afterwards.
    """
    client.flushdb()
    old = client.config_get("maxmemory*")
    client.config_set("maxmemory-policy", policy)
    client.config_set("maxmemory", client.info("memory")["used_memory"] + budget_bytes)
    client.config_resetstat()
    value = "x" * value_bytes
    hits = total = errors = 0
    half = len(requests) // 2
    try:
        for start in range(0, len(requests), batch):
            ids = requests[start : start + batch]
            keys = [f"zipf:{k}" for k in ids]
            found = client.mget(keys)
            pipe = client.pipeline(transaction=False)
            for key, got in zip(keys, found, strict=True):
                if got is None:
                    pipe.set(key, value)
            replies = pipe.execute(raise_on_error=False)
            errors += sum(
                isinstance(x, redis.exceptions.ResponseError) for x in replies
            )
            if start >= half:
                hits += sum(v is not None for v in found)
                total += len(found)
        evicted = int(client.info("stats")["evicted_keys"])
    finally:
        client.flushdb()
        client.config_set("maxmemory", old["maxmemory"])
        client.config_set("maxmemory-policy", old["maxmemory-policy"])
    return EvictionResult(policy, hits / total if total else 0.0, evicted, errors)
