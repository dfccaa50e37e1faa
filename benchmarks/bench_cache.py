"""Benchmark: the cache hit paths vs a raw GET; a local hit vs a server hit.

Usage: python benchmarks/bench_cache.py [--seconds 15] [--block 50] [--url URL]

Every rate is measured in this run, on one server, with the variants
interleaved in blocks of a few milliseconds so that load from other processes
falls on all of them alike; ratios are to the raw GET of the same run. Two
rates per variant: over all the time spent, and from the median block time
(robust to stalls on a busy machine). Targets: the ``Cache.get_or_load`` hit
path, in ``"lock"`` and in ``"xfetch"`` mode, reaches at least 0.9x the raw
``GET`` rate; a ``ClientSideCache`` local hit at least 50x. A miss is printed,
not turned into a failing exit code: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

import redis

from labkit.cache import JSON_DECODER, Cache, ClientSideCache, GroupedCache
from labkit.server import Server

TARGET = 0.9
LOCAL_TARGET = 50.0
VALUE = {"id": 1, "name": "Margaret Knuth", "email": "margaret.knuth1@example.org"}


def measure(
    variants: dict[str, Callable[[], object]], *, seconds: float, block: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Ops/s of each variant, measured in alternating blocks of ``block`` calls.

    Each pass times one block of every variant (in alternating order) until
    ``seconds`` have passed. Blocks last a few milliseconds, so load from other
    processes falls on all variants alike.

    Returns:
        Two dicts of ops/s: over all the time spent (the plain rate), and from
        the median block time (robust to the stalls a shared machine adds).
    """
    clock = time.perf_counter
    blocks: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    deadline = clock() + seconds
    passes = 0
    while clock() < deadline:
        for name in names if passes % 2 == 0 else reversed(names):
            fn = variants[name]
            start = clock()
            for _ in range(block):
                fn()
            blocks[name].append(clock() - start)
        passes += 1
    overall = {n: block * len(b) / sum(b) for n, b in blocks.items()}
    typical = {n: block / statistics.median(b) for n, b in blocks.items()}
    return overall, typical


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="total time")
    parser.add_argument("--block", type=int, default=50, help="calls per block")
    parser.add_argument("--url", help="an existing server (default: start one)")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        if args.url:
            r = redis.Redis.from_url(args.url, decode_responses=True)
        else:
            server = stack.enter_context(Server())
            r = server.client()
        stack.callback(r.close)

        payload = json.dumps(VALUE)
        r.set("bench:raw", payload)
        cache = Cache(r, namespace="bench", ttl=3600)
        xfetch = Cache(r, namespace="bench-xf", ttl=3600, stampede="xfetch")
        grouped = GroupedCache(r, "bench-g", ttl=3600)
        for c in (cache, xfetch):
            c.get_or_load("user:1", lambda: VALUE)
        grouped.get_or_load(1, "user", lambda: VALUE)
        local = stack.enter_context(ClientSideCache(r))
        local.get("bench:raw")

        def loader() -> dict[str, object]:
            raise AssertionError("the benchmark measures hits only")

        rates, typical = measure(
            {
                "raw GET": lambda: r.get("bench:raw"),
                "raw GET + json.loads": lambda: json.loads(r.get("bench:raw")),
                "Cache hit (lock mode)": lambda: cache.get_or_load("user:1", loader),
                "Cache hit (xfetch)": lambda: xfetch.get_or_load("user:1", loader),
                "GroupedCache hit": lambda: grouped.get_or_load(1, "user", loader),
                "ClientSideCache local hit": lambda: local.get("bench:raw"),
            },
            seconds=args.seconds,
            block=args.block,
        )
        if local.stats.misses != 1 or local.invalidations:
            print("warning: the local cache was invalidated during the run")

    ratios = {name: value / rates["raw GET"] for name, value in rates.items()}
    median = {name: value / typical["raw GET"] for name, value in typical.items()}
    width = max(map(len, rates))
    print(
        f"\n{'variant':<{width}}  {'ops/s':>10}  {'vs raw GET':>10}"
        f"  {'ops/s (median block)':>21}  {'vs raw GET':>10}"
    )
    for name in rates:
        print(
            f"{name:<{width}}  {rates[name]:>10,.0f}  {ratios[name]:>9.2f}x"
            f"  {typical[name]:>21,.0f}  {median[name]:>9.2f}x"
        )
    print()
    for name in ("Cache hit (lock mode)", "Cache hit (xfetch)"):
        hit = ratios[name]
        verdict = "met" if hit >= TARGET else "NOT met"
        print(
            f"{name} / raw GET = {hit:.2f}x (target >= {TARGET}x: {verdict}); "
            f"from median blocks: {median[name]:.2f}x"
        )
    print(f"JSON decoder on the hit path: {JSON_DECODER}")
    local_hit = ratios["ClientSideCache local hit"]
    verdict = "met" if local_hit >= LOCAL_TARGET else "NOT met"
    print(
        f"local hit / server hit (raw GET) = {local_hit:.1f}x (target >= "
        f"{LOCAL_TARGET:g}x: {verdict}); "
        f"{median['ClientSideCache local hit']:.1f}x from median blocks"
    )
    print(
        f"({args.seconds:g} s in alternating blocks of {args.block} calls; "
        "one thread, loopback)"
    )
    return 0


if __name__ == "__main__" and "--instructions" in sys.argv:
    # Instructions per operation (callgrind), the load-proof counterpart of the
    # rates below, and the targets: bench_instructions.py, topic "cache".
    from bench_instructions import main as count_instructions

    sys.exit(count_instructions(["--only", "cache"]))

if __name__ == "__main__":
    sys.exit(main())
