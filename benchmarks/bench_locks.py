"""Lock acquire+release per second: labkit vs redis-py, python-redis-lock, pottery.

Run: .venv/bin/python benchmarks/bench_locks.py [--blocks N] [--block-ms MS]

One process, embedded servers. A pair is one uncontended acquire followed by
its release. Each comparison is measured as alternating short blocks of A and B
(A B, B A, ...); the ratio reported is the median of the per-pair ratios, so
that the machine's background load, which changes over seconds, hits both
alike. Prints one table, the round trips labkit's lock makes per pair (counted
by the server), and whether each acceptance ratio was met; a miss is
reported, not an error (benchmarks are informational).

Contenders:
- two ``PING``s: two round trips, the floor of any lock that acquires and
  releases in one round trip each;
- single server: labkit ``Lock`` (with its fencing counter), redis-py's
  ``Lock`` (``client.lock``), python-redis-lock's ``Lock``;
- five servers: labkit ``Redlock`` and pottery's ``Redlock``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pottery
import redis_lock
from tqdm import tqdm

from labkit.locks import Lock, Redlock
from labkit.server import Server

Call = Callable[[], Any]
FLOOR = "2 x PING"
TTL = 10.0  # seconds: no lease expires during the run


def _pair(acquire: Call, release: Call) -> Call:
    def run() -> None:
        if not acquire():
            raise RuntimeError("an uncontended acquire failed")
        release()

    return run


def single_server(server: Server) -> dict[str, Call]:
    """Label -> one acquire+release pair on one server."""
    r = server.client()
    rb = server.client(decode_responses=False)
    ours = Lock(r, "bench:labkit", ttl=TTL)
    theirs = r.lock("bench:redis-py", timeout=TTL)
    prl = redis_lock.Lock(rb, "bench:python-redis-lock", expire=int(TTL))

    def ping2() -> None:
        r.ping()
        r.ping()

    return {
        FLOOR: ping2,
        "labkit Lock": _pair(ours.acquire, ours.release),
        "redis-py Lock": _pair(theirs.acquire, theirs.release),
        "python-redis-lock Lock": _pair(prl.acquire, prl.release),
    }


def five_servers(servers: list[Server]) -> dict[str, Call]:
    """Label -> one acquire+release pair on five servers."""
    ours = Redlock([s.client() for s in servers], "bench:redlock", ttl=TTL)
    masters = {s.client(decode_responses=False) for s in servers}
    theirs = pottery.Redlock(
        key="bench:pottery", masters=masters, auto_release_time=TTL
    )
    return {
        "labkit Redlock x5": _pair(ours.acquire, ours.release),
        "pottery Redlock x5": _pair(theirs.acquire, theirs.release),
    }


def block_rate(fn: Call, calls: int) -> float:
    """Pairs per second over ``calls`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls / (time.perf_counter() - start)


def paired(a: Call, b: Call, blocks: int, block_ms: float) -> tuple[list, list, list]:
    """Alternate blocks of a and b; their block rates and the a/b ratio per pair."""
    na = max(5, int(block_rate(a, 30) * block_ms / 1000))
    nb = max(5, int(block_rate(b, 30) * block_ms / 1000))
    rates_a, rates_b, ratios = [], [], []
    for i in range(blocks):
        if i % 2:
            rb, ra = block_rate(b, nb), block_rate(a, na)
        else:
            ra, rb = block_rate(a, na), block_rate(b, nb)
        rates_a.append(ra)
        rates_b.append(rb)
        ratios.append(ra / rb)
    return rates_a, rates_b, ratios


def round_trips(server: Server, pairs: int = 200) -> dict[str, float]:
    """Commands the server ran per labkit acquire+release pair (INFO commandstats)."""
    admin = server.client()
    lock = Lock(server.client(), "bench:count", ttl=TTL)
    lock.acquire()
    lock.release()  # the scripts are loaded now

    def calls() -> dict[str, int]:
        stats = admin.info("commandstats")
        return {k[8:]: v["calls"] for k, v in stats.items()}

    before = calls()
    for _ in range(pairs):
        lock.acquire()
        lock.release()
    after = calls()
    return {
        k: (n - before.get(k, 0)) / pairs
        for k, n in sorted(after.items())
        if k != "info" and n > before.get(k, 0)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30, help="pairs per ratio")
    parser.add_argument("--block-ms", type=float, default=25.0)
    opts = parser.parse_args()

    comparisons = [
        ("labkit Lock", FLOOR),
        ("labkit Lock", "redis-py Lock"),
        ("labkit Lock", "python-redis-lock Lock"),
        ("labkit Redlock x5", "pottery Redlock x5"),
    ]
    rates: dict[str, list[float]] = defaultdict(list)
    ratio: dict[tuple[str, str], float] = {}
    servers = [Server() for _ in range(5)]
    try:
        for s in servers:
            s.start()
        calls = {**single_server(servers[0]), **five_servers(servers)}
        per_pair = round_trips(servers[0])
        for a, b in tqdm(comparisons, desc="bench_locks", leave=False):
            ra, rb, ratios = paired(calls[a], calls[b], opts.blocks, opts.block_ms)
            rates[a] += ra
            rates[b] += rb
            ratio[a, b] = statistics.median(ratios)
    finally:
        for s in servers:
            s.close()

    print(f"{'contender':<28}{'acquire+release/s':>19}")
    for label in calls:
        print(f"{label:<28}{statistics.median(rates[label]):>19,.0f}")

    print("\nCommands the server ran per labkit Lock acquire+release:")
    print("  " + ", ".join(f"{k} {v:g}" for k, v in per_pair.items()))
    print(
        f"  round trips (client calls): {per_pair.get('evalsha', 0):g} EVALSHA; "
        "the others ran inside those scripts"
    )

    print("\nAcceptance (median of paired ratios, same run):")
    for a, b in comparisons[1:]:
        x = ratio[a, b]
        verdict = "met" if x >= 1.0 else "MISSED"
        print(f"  {a} vs {b:<26}{x:5.2f}x (>= 1.00x) {verdict}")
    trips = per_pair.get("evalsha", 0)
    print(
        f"  labkit Lock round trips per pair: {trips:g} (<= 2) "
        f"{'met' if trips <= 2 else 'MISSED'}"
    )
    print(f"  (labkit Lock vs {FLOOR}: {ratio['labkit Lock', FLOOR]:.2f}x)")


if __name__ == "__main__" and "--instructions" in sys.argv:
    # Instructions per operation (callgrind), the load-proof counterpart of the
    # rates below, and the targets: bench_instructions.py, topic "locks".
    from bench_instructions import main as count_instructions

    sys.exit(count_instructions(["--only", "locks"]))

if __name__ == "__main__":
    main()
