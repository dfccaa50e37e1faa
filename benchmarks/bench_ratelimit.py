"""Rate limiter decisions per second, single client, against their floors and `limits`.

Run: .venv/bin/python benchmarks/bench_ratelimit.py [--blocks N] [--block-ms MS]
     .venv/bin/python benchmarks/bench_ratelimit.py --instructions
     (minutes: the ratelimit topic of bench_instructions.py)

Everything runs against one embedded server in one process. Each comparison is
measured as a pair: short blocks of A and of B alternate (A B, B A, ...), each
block's rate is recorded, and the ratio reported is the median of the per-pair
ratios. The machine's background load changes over seconds, so alternating
blocks of ~20 ms puts A and B under the same load; a ratio of two separately
measured rates would mostly measure the load. Prints one table and whether
each acceptance ratio was met; a miss is reported, not an error (benchmarks are
informational).

Contenders:
- plain ``GET`` and ``INCR``: one command, the round-trip ceiling;
- ``EVALSHA`` of a trivial two-command script (INCR + PEXPIRE), called as the
  bare command: the floor any atomic Lua limiter pays;
- labkit's five limiters, ``allow(key)``;
- the ``limits`` package's strategies on the same server (``hit``), for the
  algorithms both have;
- ``allow_many`` over 100 keys per round trip (decisions per second).

It also counts round trips (requests written to the socket) per decision, for
labkit and for `limits`: a limiter that needs two round trips pays twice the
network latency, which loopback hides.

``--instructions`` measures what no load can disturb: the instructions one
decision costs the client process and the server, counted by valgrind's
callgrind (``bench_instructions.py``, where the targets are judged; a run
with no decisions is subtracted, so start-up does not count). On a loaded or
shared machine the rates above move with the load; these counts do not. The
kernel's share of a round trip (the same for every contender) is not counted.
The batch contenders (``allow_many`` over 100 keys) are counted per decision,
so the batch-vs-single ratio there is the client and server work one round
trip saves, not the latency it saves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import limits
import limits.storage
import limits.strategies
import redis
from tqdm import tqdm

import labkit
from labkit.ratelimit import ALGORITHMS
from labkit.server import Server

TRIVIAL = "redis.call('INCR', KEYS[1]) return redis.call('PEXPIRE', KEYS[1], ARGV[1])"
# Large enough that every request in the run is allowed (the common path).
LIMIT, PERIOD = 1_000_000, 3600
BATCH = 100
FLOOR = "EVALSHA trivial"
# labkit algorithm -> the `limits` strategy implementing the same idea.
LIMITS_EQUIVALENT = {
    "fixed_window": limits.strategies.FixedWindowRateLimiter,
    "sliding_log": limits.strategies.MovingWindowRateLimiter,
    "sliding_window": limits.strategies.SlidingWindowCounterRateLimiter,
}

Call = tuple[Callable[[], Any], int]  # (one call, decisions it makes)


def contenders(url: str) -> dict[str, Call]:
    """Label -> (zero-argument call, decisions per call)."""
    r = labkit.connect(url)
    # The bare command, with no wrapper at all: the floor any Lua limiter pays.
    sha = r.script_load(TRIVIAL)
    out: dict[str, Call] = {
        "GET": (lambda: r.get("bench:get"), 1),
        "INCR": (lambda: r.incr("bench:incr"), 1),
        FLOOR: (lambda: r.execute_command("EVALSHA", sha, 1, "bench:lua", 60_000), 1),
    }
    for name, cls in ALGORITHMS.items():
        lim = cls(r, limit=LIMIT, period=PERIOD)
        out[f"labkit {name}"] = (lambda lim=lim: lim.allow("bench"), 1)
    storage = limits.storage.RedisStorage(url)
    item = limits.RateLimitItemPerHour(LIMIT)
    for name, strategy_cls in LIMITS_EQUIVALENT.items():
        strategy = strategy_cls(storage)
        # Each strategy its own key: they store different types under one name.
        out[f"limits {strategy_cls.__name__}"] = (
            lambda s=strategy, n=name: s.hit(item, "bench", n),
            1,
        )
    keys = [f"user:{i}" for i in range(BATCH)]
    for name, cls in ALGORITHMS.items():
        lim = cls(r, limit=LIMIT, period=PERIOD)
        out[f"labkit {name} batch x{BATCH}"] = (
            lambda lim=lim: lim.allow_many(keys),
            BATCH,
        )
    return out


def block_rate(call: Call, calls: int) -> float:
    """Decisions per second over ``calls`` back-to-back calls."""
    fn, per_call = call
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls * per_call / (time.perf_counter() - start)


def calls_per_block(call: Call, block_ms: float) -> int:
    """How many calls of ``call`` take about ``block_ms`` (after a warm-up)."""
    speed = block_rate(call, 50) / call[1]
    return max(5, int(speed * block_ms / 1000))


def paired(a: Call, b: Call, blocks: int, block_ms: float) -> tuple[list, list, list]:
    """Alternate blocks of a and b; their block rates and the a/b ratio per pair."""
    na, nb = calls_per_block(a, block_ms), calls_per_block(b, block_ms)
    rates_a, rates_b, ratios = [], [], []
    for i in range(blocks):
        if i % 2:  # b first every other pair: neither always runs second
            rb, ra = block_rate(b, nb), block_rate(a, na)
        else:
            ra, rb = block_rate(a, na), block_rate(b, nb)
        rates_a.append(ra)
        rates_b.append(rb)
        ratios.append(ra / rb)
    return rates_a, rates_b, ratios


class CountingConnection(redis.Connection):
    """A connection that counts the requests it writes (one per round trip)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def round_trips(url: str, n: int = 200) -> dict[str, float]:
    """Requests written per decision, for each limiter (after a warm-up)."""
    kwargs = redis.connection.parse_url(url)
    pool = redis.ConnectionPool(connection_class=CountingConnection, **kwargs)
    r = redis.Redis(connection_pool=pool, decode_responses=True)
    storage = limits.storage.RedisStorage(url, connection_pool=pool)
    item = limits.RateLimitItemPerHour(LIMIT)
    calls: dict[str, Callable[[], Any]] = {}
    for name, cls in ALGORITHMS.items():
        lim = cls(r, limit=LIMIT, period=PERIOD, prefix=f"rt:{name}")
        calls[f"labkit {name}"] = lambda lim=lim: lim.allow("k")
    for name, strategy_cls in LIMITS_EQUIVALENT.items():
        strategy = strategy_cls(storage)
        calls[f"limits {strategy_cls.__name__}"] = lambda s=strategy, n=name: s.hit(
            item, "rt", n
        )
    out = {}
    for label, fn in calls.items():
        for _ in range(5):
            fn()  # scripts loaded, connections open
        before = CountingConnection.sent
        for _ in range(n):
            fn()
        out[label] = (CountingConnection.sent - before) / n
    pool.disconnect()
    return out


# --- instruction counts (valgrind) --------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40, help="pairs per ratio")
    parser.add_argument("--block-ms", type=float, default=20.0)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per decision with valgrind instead (minutes; "
        "bench_instructions.py --only ratelimit)",
    )
    opts = parser.parse_args()
    if opts.instructions:
        from bench_instructions import main as count_instructions

        sys.exit(count_instructions(["--only", "ratelimit"]))

    pairs: list[tuple[str, str]] = [("GET", FLOOR), ("INCR", FLOOR)]
    pairs += [(f"labkit {name}", FLOOR) for name in ALGORITHMS]
    pairs += [
        (f"labkit {name}", f"limits {cls.__name__}")
        for name, cls in LIMITS_EQUIVALENT.items()
    ]
    pairs += [
        (f"labkit {name} batch x{BATCH}", f"labkit {name}") for name in ALGORITHMS
    ]

    rates: dict[str, list[float]] = defaultdict(list)
    ratio: dict[tuple[str, str], float] = {}
    with Server() as server:
        trips = round_trips(server.url)
        calls = contenders(server.url)
        for a, b in tqdm(pairs, desc="bench_ratelimit", leave=False):
            ra, rb, ratios = paired(calls[a], calls[b], opts.blocks, opts.block_ms)
            rates[a] += ra
            rates[b] += rb
            ratio[a, b] = statistics.median(ratios)

    print(f"{'contender':<44}{'decisions/s':>12}{'vs EVALSHA (paired)':>21}")
    for label in calls:
        vs = ratio.get((label, FLOOR))
        shown = f"{vs:.2f}x" if vs else "1.00x" if label == FLOOR else "-"
        print(f"{label:<44}{statistics.median(rates[label]):>12,.0f}{shown:>21}")

    print("\nAcceptance (median of paired ratios, same run):")
    for name in ALGORITHMS:
        x = ratio[f"labkit {name}", FLOOR]
        verdict = "met" if x >= 0.9 else "MISSED"
        print(f"  {name:<16} vs bare EVALSHA {'':<26}{x:5.2f}x (>= 0.90x) {verdict}")
    for name, cls in LIMITS_EQUIVALENT.items():
        x = ratio[f"labkit {name}", f"limits {cls.__name__}"]
        verdict = "met" if x >= 1.0 else "MISSED"
        print(
            f"  {name:<16} vs limits {cls.__name__:<32}{x:5.2f}x (>= 1.00x) {verdict}"
        )
    print(f"  (INCR vs bare EVALSHA: {ratio['INCR', FLOOR]:.2f}x)")
    print(f"\nBatch form, {BATCH} keys per round trip, vs one allow() per round trip:")
    for name in ALGORITHMS:
        x = ratio[f"labkit {name} batch x{BATCH}", f"labkit {name}"]
        verdict = "met" if x >= 5 else "MISSED"
        print(f"  {name:<16} {x:5.1f}x (>= 5x) {verdict}")
    print("\nRound trips per decision (requests written to the socket):")
    for label, n in trips.items():
        verdict = (
            ""
            if not label.startswith("labkit")
            else (" met (one)" if n == 1 else " MISSED")
        )
        print(f"  {label:<44}{n:5.2f}{verdict}")


if __name__ == "__main__":
    main()
