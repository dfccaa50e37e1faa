"""Lab: the caching notebooks' experiments: stampedes, eviction, commands counted.

Each function runs one bounded trial against a real server and returns plain
numbers; the notebooks and the benchmark call them in loops and plot them.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import OrderedDict
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
import redis

from labkit.cache import Cache
from labkit.core.wait import wait_until
from labkit.lab.caching.readlog import ReadLog
from labkit.lab.measure import time_calls
from labkit.server import flushdb, fresh_client, reconfigured

__all__ = [
    "EvictionResult",
    "StampedeCost",
    "WindowResult",
    "belady_hit_ratio",
    "command_counts",
    "commands_run",
    "eviction_trial",
    "get_on_new_connection",
    "herd_trial",
    "lfu_hit_ratio",
    "lru_hit_ratio",
    "miss_hit",
    "stale_reads",
    "stampede_trial",
    "ttl_trace",
    "zipf_keys",
]


def stale_reads(
    local: Any, writer: Any, key: str, value: str, *, seconds: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``key`` with ``writer``, then read it through ``local`` for ``seconds``.

    ``local`` is a :class:`labkit.cache.ClientSideCache` already holding the
    key; ``writer`` another client. Reads start as soon as the write's reply
    is back, about every 0.2 ms.

    Returns:
        Milliseconds after the write returned, one per read; and whether
        each read returned something other than ``value`` (the old copy).
    """
    writer.set(key, value)
    start = time.perf_counter()
    times, stale = [], []
    while (now := time.perf_counter()) - start < seconds:
        times.append((now - start) * 1000)
        stale.append(local.get(key) != value)
        time.sleep(0.0002)
    return np.array(times), np.array(stale)


def command_counts(client: Any) -> dict[str, int]:
    """Calls per command since the server started (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


class commands_run:  # lowercase: used like a function, ``with commands_run(r):``
    """Count the commands the server ran during a ``with`` block.

    The count is server-wide (every client's commands), minus the ``INFO``
    this counter sends itself; run it while nothing else talks to the server.

    Example:
        >>> with commands_run(r) as seen:
        ...     r.get("k")
        >>> seen.counts
        {'get': 1}
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.counts: dict[str, int] = {}
        self._before: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Commands run in the block, all kinds together."""
        return sum(self.counts.values())

    def __enter__(self) -> commands_run:
        self._before = command_counts(self.client)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        after = command_counts(self.client)
        diff = {k: n - self._before.get(k, 0) for k, n in after.items()}
        diff["info"] = diff.get("info", 0) - 1  # the first snapshot's INFO
        self.counts = {k: n for k, n in sorted(diff.items()) if n > 0}


def get_on_new_connection(client: Any, key: str) -> Any:
    """``GET key`` on a connection opened for this call and closed after it.

    What a handler that connects per request does: every call pays the TCP
    handshake and the connection's setup commands (``AUTH``, ``CLIENT
    SETINFO``) before its ``GET``. The connection copies ``client``'s settings.
    """
    conn = fresh_client(client)
    try:
        return conn.get(key)
    finally:
        conn.connection_pool.disconnect()


def miss_hit(
    read: Any, drop: Any, *, n_miss: int = 20, n_hit: int = 2000
) -> dict[str, np.ndarray]:
    """Latency samples (seconds) of ``read()`` as a miss and as a hit.

    A miss is ``drop()`` (the entry's invalidation) then ``read()``, timed
    together, ``n_miss`` times without warm-up; then ``n_hit`` hits, after
    :func:`labkit.lab.measure.time_calls`' warm-up reads.
    """

    def miss() -> Any:
        drop()
        return read()

    return {
        "miss": time_calls(miss, n=n_miss, warmup=0),
        "hit": time_calls(read, n=n_hit),
    }


def herd_trial(
    client: Any,
    stampede: str,
    readers: int,
    *,
    load_seconds: float = 0.02,
    timeout: float = 10.0,
) -> int:
    """Origin calls when ``readers`` threads all miss one just-expired hot key.

    The key is stored, expired, and then ``readers`` threads read it at once.
    The loader (the origin) sleeps ``load_seconds`` and then holds until every
    reader has either called it or is waiting for another reader's load
    (``stats.loads + stats.waits == readers``). That forces the worst case,
    every reader arriving before the first load is stored, so the count does
    not depend on thread scheduling: ``readers`` for ``"none"`` and
    ``"xfetch"`` (which can only act before expiry), 1 for ``"lock"``.

    Raises:
        TimeoutError: The readers did not all arrive within ``timeout`` s.
    """
    if not isinstance(readers, int) or readers < 1:
        raise ValueError(f"readers={readers!r}: expected an int >= 1")
    cache = Cache(
        client,
        f"herd-{stampede}",
        ttl=60,
        stampede=stampede,
        lease_ttl=2 * timeout,  # the lease must outlive the held loader
        poll_interval=0.002,
    )
    cache.set("hot", 42)
    client.pexpire(cache.key("hot"), 5)
    deadline = time.monotonic() + timeout
    while client.exists(cache.key("hot")) and time.monotonic() < deadline:
        time.sleep(0.002)
    cache.stats.reset()

    def origin() -> int:
        time.sleep(load_seconds)
        stats = cache.stats
        while stats.loads + stats.waits < readers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {stats.loads + stats.waits} readers arrived")
            time.sleep(0.001)
        return 42

    start = threading.Barrier(readers)
    errors: list[BaseException] = []

    def reader() -> None:
        start.wait()
        try:
            cache.get_or_load("hot", origin)
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3 * timeout)
    cache.invalidate("hot")
    if errors:
        raise errors[0]
    return cache.stats.loads


class WindowResult(NamedTuple):
    """One :func:`stampede_trial`.

    Attributes:
        loads: Origin calls during the window (the priming load not counted),
            early reloads included.
        misses: Reads that found the key missing.
        early: Reads that reloaded before expiry (XFetch only).
    """

    loads: int
    misses: int
    early: int


class StampedeCost(NamedTuple):
    """What one :func:`stampede_trial` cost the origin, the server and the readers.

    Attributes:
        mode: The ``stampede=`` mode.
        readers: Concurrent reader threads.
        reads: Reads made during the window.
        loads: Origin calls during the window, early reloads included.
        misses: Reads that found the key missing (and loaded or waited).
        early: Reads that reloaded before expiry (XFetch).
        commands_per_read: Redis commands the server ran, per read
            (``INFO commandstats``): 1 is a bare ``GET`` per read.
        p99_ms: 99th percentile of the readers' read latency.
    """

    mode: str
    readers: int
    reads: int
    loads: int
    misses: int
    early: int
    commands_per_read: float
    p99_ms: float


def stampede_trial(
    client: Any,
    stampede: str,
    readers: int,
    *,
    load_seconds: float = 0.02,
    ttl: float = 0.25,
    think: float = 0.002,
    seed: int = 0,
) -> StampedeCost:
    """Origin calls while ``readers`` threads poll one hot key across its expiry.

    The key is loaded once, then ``readers`` threads read it in a loop (a
    ``think`` pause between reads) from before its expiry until ``3 *
    load_seconds`` after it. The loader sleeps ``load_seconds``, standing in
    for the origin. The counts depend on thread scheduling and (XFetch) on
    random draws: a measurement to look at, not to assert exact values on
    (:func:`herd_trial` is the deterministic version). The server's command
    count covers every client: run it while nothing else uses the server.

    Returns:
        Loads, misses, early reloads, commands per read and reader p99.
    """
    if not isinstance(readers, int) or readers < 1:
        raise ValueError(f"readers={readers!r}: expected an int >= 1")
    log = ReadLog()  # per-read latencies, for the p99
    cache = Cache(
        client,
        f"stampede-{stampede}",
        ttl=ttl,
        stampede=stampede,
        rng=random.Random(seed),
        poll_interval=0.002,
        on_read=log,
    )
    cache.invalidate("hot")

    def origin() -> int:
        time.sleep(load_seconds)
        return 42

    # The readers start first and wait at the barrier: on a busy machine,
    # starting 32 threads can take longer than the whole window.
    barrier = threading.Barrier(readers + 1)
    errors: list[BaseException] = []
    stop = 0.0

    def reader() -> None:
        barrier.wait()
        try:
            while time.monotonic() < stop:
                cache.get_or_load("hot", origin)
                time.sleep(think)
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(readers)]
    for t in threads:
        t.start()
    cache.get_or_load("hot", origin)
    cache.stats.reset()
    log.reset()
    with commands_run(client) as seen:
        stop = time.monotonic() + ttl + 3 * load_seconds
        barrier.wait()
        for t in threads:
            t.join(timeout=60)
    cache.invalidate("hot")
    if errors:
        raise errors[0]
    stats = cache.stats
    reads = stats.hits + stats.misses
    p99 = float(np.percentile(log.latencies(), 99) * 1000) if reads else 0.0
    return StampedeCost(
        stampede,
        readers,
        reads,
        stats.loads,
        stats.misses,
        stats.early_recomputes,
        seen.total / reads if reads else 0.0,
        p99,
    )


def ttl_trace(
    cache: Cache,
    key: str,
    loader: Any,
    *,
    duration: float = 1.0,
    step: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``key`` every ``step`` seconds for ``duration``; watch it expire.

    Reads stop at ``duration`` even if some were delayed, so a stalled machine
    makes fewer reads, never a longer trace: the loads stay at most one per
    TTL period (``ceil(duration / ttl)``).

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
        if time.monotonic() - start >= duration:
            break
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
        resident: Keys in the database at the end: how many fit.
        samples: The ``maxmemory-samples`` in force.
    """

    policy: str
    hit_ratio: float
    evicted: int
    write_errors: int
    resident: int
    samples: int


def eviction_trial(
    client: Any,
    policy: str,
    requests: np.ndarray,
    *,
    budget_bytes: int = 512_000,
    value_bytes: int = 1000,
    batch: int = 200,
    samples: int | None = None,
) -> EvictionResult:
    """Replay ``requests`` as cache-aside reads under ``maxmemory`` + ``policy``.

    Sets ``maxmemory`` to the memory in use plus ``budget_bytes`` (so the
    server's own overhead does not count), flushes, then for each batch of
    requests: ``MGET`` them, ``SET`` the missing ones (values of
    ``value_bytes``). Hit ratio is measured on the second half, once warm.
    ``samples`` sets ``maxmemory-samples`` (keys looked at per eviction).
    The config is restored afterwards.
    """
    flushdb(client)  # refuses a database labkit did not start
    # Valkey frees a flushed database in the background by default
    # (lazyfree-lazy-user-flush): a SYNC flush keeps the old keys out of the
    # baseline below, which would otherwise make the budget too generous.
    client.execute_command("FLUSHDB", "SYNC")
    # An earlier ASYNC flush (another test's, the notebook's setup) may still
    # be freeing in the background: its memory would count in the baseline and
    # be freed during the trial, widening the budget. Wait for it (bounded).
    if not wait_until(
        lambda: int(client.info("memory").get("lazyfree_pending_objects", 0)) == 0,
        timeout=60,
    ):
        raise RuntimeError("the server's background frees did not finish in 60 s")
    # CONFIG RESETSTAT also frees the per-command latency histograms
    # (latency-tracking, Redis 7+), and each command allocates its own the
    # first time it runs (tens of kB each): reset first, then set the policy
    # and run every command of the trial once, so that the baseline taken
    # next already holds all of them and the budget is the keys' alone.
    client.config_resetstat()
    policy_limits: dict[str, str | int] = {"maxmemory-policy": policy}
    if samples is not None:
        policy_limits["maxmemory-samples"] = samples
    value = "x" * value_bytes
    hits = total = errors = 0
    half = len(requests) // 2
    with reconfigured(client, policy_limits):
        in_force = int(client.config_get("maxmemory-samples")["maxmemory-samples"])
        client.mget(["zipf:warm-up"])
        client.pipeline(transaction=False).set("zipf:warm-up", "x").execute()
        client.delete("zipf:warm-up")
        client.dbsize()
        client.info("stats")
        budget = {"maxmemory": int(client.info("memory")["used_memory"]) + budget_bytes}
        with reconfigured(client, budget):
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
                resident = int(client.dbsize())
            finally:
                client.flushdb()  # checked above; empty before the limit is lifted
    ratio = hits / total if total else 0.0
    return EvictionResult(policy, ratio, evicted, errors, resident, in_force)


def _warm_half(requests: np.ndarray) -> int:
    return len(requests) // 2


def lru_hit_ratio(requests: np.ndarray, capacity: int) -> float:
    """Hit ratio of an exact LRU cache of ``capacity`` keys, second half only.

    Every request is a read; a miss inserts the key, evicting the least
    recently used one when full. Computed offline, one request at a time.
    """
    if capacity < 1:
        raise ValueError(f"capacity={capacity!r}: expected an int >= 1")
    held: OrderedDict[int, None] = OrderedDict()
    half = _warm_half(requests)
    hits = 0
    for i, key in enumerate(requests.tolist()):
        if key in held:
            held.move_to_end(key)
            hits += i >= half
            continue
        held[key] = None
        if len(held) > capacity:
            held.popitem(last=False)
    return hits / (len(requests) - half)


def lfu_hit_ratio(requests: np.ndarray, capacity: int) -> float:
    """Hit ratio of an exact LFU cache of ``capacity`` keys, second half only.

    Every request is a read; a miss inserts the key with a count of 1, and a
    full cache first evicts the resident key with the lowest count (the least
    recently used of those on a tie). Counts belong to resident keys and are
    forgotten on eviction, as the server's LFU counters are; unlike the
    server's, they are exact, never decay and compare every key, not a sample.
    """
    if capacity < 1:
        raise ValueError(f"capacity={capacity!r}: expected an int >= 1")
    held: dict[int, tuple[int, int]] = {}  # key -> (count, last use)
    heap: list[tuple[int, int, int]] = []  # (count, last use, key); stale skipped
    half = _warm_half(requests)
    hits = 0
    for i, key in enumerate(requests.tolist()):
        if key in held:
            hits += i >= half
            count = held[key][0] + 1
        else:
            count = 1
            if len(held) >= capacity:
                while True:
                    n, used, victim = heapq.heappop(heap)
                    if held.get(victim) == (n, used):
                        del held[victim]
                        break
        held[key] = (count, i)
        heapq.heappush(heap, (count, i, key))
    return hits / (len(requests) - half)


def belady_hit_ratio(requests: np.ndarray, capacity: int) -> float:
    """Hit ratio of Belady's optimal cache (MIN) of ``capacity`` keys, second half.

    The offline optimum: on a miss with a full cache, evict the key whose next
    request lies furthest in the future (or never comes). No online policy
    can hit more often on the same trace with the same capacity.
    """
    if capacity < 1:
        raise ValueError(f"capacity={capacity!r}: expected an int >= 1")
    keys = requests.tolist()
    n = len(keys)
    never = n + 1
    next_use = [never] * n
    last: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        next_use[i] = last.get(keys[i], never)
        last[keys[i]] = i
    held: dict[int, int] = {}  # key -> its next use
    heap: list[tuple[int, int]] = []  # (-next use, key); stale entries skipped
    half = _warm_half(requests)
    hits = 0
    for i, key in enumerate(keys):
        if key in held:
            hits += i >= half
        elif len(held) >= capacity:
            while True:
                neg, victim = heapq.heappop(heap)
                if held.get(victim) == -neg:
                    del held[victim]
                    break
        held[key] = next_use[i]
        heapq.heappush(heap, (-next_use[i], key))
    return hits / (n - half)
