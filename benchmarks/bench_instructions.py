"""Instructions per operation for every benchmark's contenders, and the targets.

Run: .venv/bin/python benchmarks/bench_instructions.py [--only TOPIC] [-n N]
     (make bench-instructions; about 20-30 minutes on 2 cores)

Rates (the other bench_*.py scripts) are what a learner wants to see, but on a
shared or loaded machine they move by 2x from one run to the next, so a target
met in one run and missed in the next is not a result. The targets of the
issue tracker are therefore judged here, in instructions per operation (client
process plus server, counted by callgrind: see ``_callgrind.py``), against a
floor or a peer counted in the same run. Topics: basics, cache, ratelimit,
locks, sharding, queues, pubsub, persistence, proxy. ``--only`` keeps the
contenders whose label starts with a topic (or contains a word).

Prints every contender's count, then each target with PASS or MISS. A miss is
reported, not an error: a benchmark measures, a test asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).parent))
from _callgrind import Factory, Target, client_main, count, cpu_count, report

TRIVIAL = "redis.call('INCR', KEYS[1]) return redis.call('PEXPIRE', KEYS[1], ARGV[1])"
LIMIT, PERIOD, BATCH = 1_000_000, 3600, 100
LOCAL_HITS = 1000  # local hits per call of the ClientSideCache contender
ALGOS = ("fixed_window", "sliding_log", "sliding_window", "token_bucket", "gcra")
VALUE = {"id": 1, "name": "Margaret Knuth", "email": "margaret.knuth1@example.org"}


def _client(url: str, **kwargs: Any) -> redis.Redis:
    kwargs.setdefault("decode_responses", True)
    return redis.Redis.from_url(url, socket_timeout=60, **kwargs)


# --- basics -------------------------------------------------------------------
def raw_get(url: str) -> tuple[Callable[[], Any], int]:
    r = _client(url)
    r.set("bench:raw", json.dumps(VALUE))
    return (lambda: r.get("bench:raw")), 1


def raw_get_decode(url: str) -> tuple[Callable[[], Any], int]:
    r = _client(url)
    r.set("bench:raw", json.dumps(VALUE))
    return (lambda: json.loads(r.get("bench:raw"))), 1


def pipelined_get(url: str) -> tuple[Callable[[], Any], int]:
    r = _client(url)
    r.set("bench:raw", "x")

    def call() -> Any:
        pipe = r.pipeline(transaction=False)
        for _ in range(100):
            pipe.get("bench:raw")
        return pipe.execute()

    return call, 100


def evalsha_trivial(url: str) -> tuple[Callable[[], Any], int]:
    r = _client(url)
    sha = r.script_load(TRIVIAL)
    return (lambda: r.execute_command("EVALSHA", sha, 1, "bench:lua", 60_000)), 1


# --- cache --------------------------------------------------------------------
def cache_hit(mode: str) -> Factory:
    def factory(url: str) -> tuple[Callable[[], Any], int]:
        from labkit.cache import Cache

        r = _client(url)
        cache = Cache(r, namespace="bench", ttl=3600, stampede=mode)
        cache.get_or_load("user:1", lambda: VALUE)

        def loader() -> Any:
            raise AssertionError("hits only")

        return (lambda: cache.get_or_load("user:1", loader)), 1

    return factory


def local_hit(url: str) -> tuple[Callable[[], Any], int]:
    from labkit.cache import ClientSideCache

    r = _client(url)
    r.set("bench:raw", json.dumps(VALUE))
    local = ClientSideCache(r).start()  # closed as the process exits
    local.get("bench:raw")
    hit = lambda: local.get("bench:raw")  # noqa: E731 - one call per hit, as a GET's

    def call() -> None:
        # LOCAL_HITS hits per call: a hit costs so little that the listener's
        # and the checker's wake-ups (per second, not per hit) would swamp a
        # count of only n hits.
        for _ in range(LOCAL_HITS):
            hit()

    return call, LOCAL_HITS


# --- rate limiting ------------------------------------------------------------
def limiter(name: str, batch: bool = False) -> Factory:
    def factory(url: str) -> tuple[Callable[[], Any], int]:
        from labkit.ratelimit import ALGORITHMS

        lim = ALGORITHMS[name](_client(url), limit=LIMIT, period=PERIOD)
        if batch:
            keys = [f"user:{i}" for i in range(BATCH)]
            return (lambda: lim.allow_many(keys)), BATCH
        return (lambda: lim.allow("bench")), 1

    return factory


def limits_strategy(cls_name: str) -> Factory:
    def factory(url: str) -> tuple[Callable[[], Any], int]:
        import limits
        import limits.storage
        import limits.strategies

        cls = getattr(limits.strategies, cls_name)
        strategy = cls(limits.storage.RedisStorage(url))
        item = limits.RateLimitItemPerHour(LIMIT)
        return (lambda: strategy.hit(item, "bench", cls_name)), 1

    return factory


# --- locks --------------------------------------------------------------------
def labkit_lock(url: str) -> tuple[Callable[[], Any], int]:
    from labkit.locks import Lock

    lock = Lock(_client(url), "bench", ttl=10)

    def call() -> None:
        lock.acquire(blocking=False)
        lock.release()

    return call, 1


def redis_py_lock(url: str) -> tuple[Callable[[], Any], int]:
    lock = _client(url).lock("bench:rp", timeout=10)

    def call() -> None:
        lock.acquire(blocking=False)
        lock.release()

    return call, 1


# --- sharding -----------------------------------------------------------------
def sharded_get(url: str) -> tuple[Callable[[], Any], int]:
    from labkit.sharding import HashRing, ShardedClient

    r = _client(url)
    sharded = ShardedClient({"a": r, "b": r, "c": r}, HashRing(["a", "b", "c"]))
    sharded.set("user:1", "x")
    return (lambda: sharded.get("user:1")), 1


def direct_get(url: str) -> tuple[Callable[[], Any], int]:
    r = _client(url)
    r.set("user:1", "x")
    return (lambda: r.get("user:1")), 1


def ring_lookup(url: str) -> tuple[Callable[[], Any], int]:
    from labkit.sharding import HashRing

    ring = HashRing([f"node-{i}" for i in range(8)])
    keys = [f"user:{i}" for i in range(100)]
    return (lambda: [ring.node_for(k) for k in keys]), 100


def uhashring_lookup(url: str) -> tuple[Callable[[], Any], int]:
    from uhashring import HashRing

    ring = HashRing(nodes=[f"node-{i}" for i in range(8)])
    keys = [f"user:{i}" for i in range(100)]
    return (lambda: [ring.get_node(k) for k in keys]), 100


# --- queues -------------------------------------------------------------------
JOBS = 100  # jobs per call: enqueued, then one worker drains them


def labkit_job(url: str) -> tuple[Callable[[], Any], int]:
    from labkit.queues import JobQueue, Worker

    queue = JobQueue(_client(url), "bench")
    worker = Worker(queue, lambda job: None, name="w1", block=0.01)

    def call() -> None:
        queue.enqueue_many([{"n": i} for i in range(JOBS)])
        worker.run(burst=True)

    return call, JOBS


def rq_job(url: str) -> tuple[Callable[[], Any], int]:
    import rq

    r = redis.Redis.from_url(url)  # rq wants bytes
    queue = rq.Queue("bench", connection=r)

    def call() -> None:
        for _ in range(JOBS):
            queue.enqueue(os.getpid)  # a no-op job rq can import (not __main__)
        # A burst worker per call, as `rq worker --burst` is; reusing one
        # worker object made some bursts wait for a minute here (rq 3.0).
        rq.SimpleWorker([queue], connection=r).work(burst=True, logging_level="ERROR")

    return call, JOBS


# --- pub/sub, persistence, proxy ------------------------------------------------
def raw_publish(url: str) -> tuple[Callable[[], Any], int]:
    r = _client(url)
    return (lambda: r.publish("news", "hello")), 1


def labkit_publish(url: str) -> tuple[Callable[[], Any], int]:
    from labkit.pubsub import Publisher

    pub = Publisher(_client(url))
    return (lambda: pub.publish("news", "hello")), 1


def set_under(fsync: str | None) -> Factory:
    def factory(url: str) -> tuple[Callable[[], Any], int]:
        r = _client(url)
        if fsync is not None:  # our own callgrind server: reconfiguring it is fine
            r.config_set("appendonly", "yes")
            r.config_set("appendfsync", fsync)
        value = "x" * 100
        return (lambda: r.set("bench:k", value)), 1

    return factory


def proxied_get(url: str) -> tuple[Callable[[], Any], int]:
    from labkit.lab.proxy import Proxy

    target = redis.connection.parse_url(url)
    proxy = Proxy(target["host"], int(target["port"])).start()
    r = redis.Redis(
        port=proxy.port,
        password=target.get("password"),
        decode_responses=True,
        socket_timeout=60,
    )
    r.set("bench:raw", "x")
    return (lambda: r.get("bench:raw")), 1


FACTORIES: dict[str, Factory] = {
    "basics GET": raw_get,
    "basics GET + json.loads": raw_get_decode,
    "basics GET pipelined x100": pipelined_get,
    "basics EVALSHA trivial": evalsha_trivial,
    "cache hit (lock mode)": cache_hit("lock"),
    "cache hit (xfetch)": cache_hit("xfetch"),
    "cache ClientSideCache local hit": local_hit,
    **{
        f"ratelimit labkit {n}": limiter(n)
        for n in (
            "fixed_window",
            "sliding_log",
            "sliding_window",
            "token_bucket",
            "gcra",
        )
    },
    **{
        f"ratelimit labkit {n} batch x{BATCH}": limiter(n, batch=True)
        for n in (
            "fixed_window",
            "sliding_log",
            "sliding_window",
            "token_bucket",
            "gcra",
        )
    },
    "ratelimit limits FixedWindow": limits_strategy("FixedWindowRateLimiter"),
    "ratelimit limits MovingWindow": limits_strategy("MovingWindowRateLimiter"),
    "ratelimit limits SlidingWindowCounter": limits_strategy(
        "SlidingWindowCounterRateLimiter"
    ),
    "locks labkit Lock acquire+release": labkit_lock,
    "locks redis-py Lock acquire+release": redis_py_lock,
    "sharding ShardedClient.get": sharded_get,
    "sharding direct GET": direct_get,
    "sharding HashRing lookup": ring_lookup,
    "sharding uhashring lookup": uhashring_lookup,
    "queues labkit job (enqueue, work, ack)": labkit_job,
    "queues rq job (enqueue, burst work)": rq_job,
    "pubsub PUBLISH": raw_publish,
    "pubsub Publisher.publish": labkit_publish,
    "persistence SET, no AOF": set_under(None),
    "persistence SET, appendfsync everysec": set_under("everysec"),
    "persistence SET, appendfsync always": set_under("always"),
    "proxy GET direct": raw_get,
    "proxy GET through the proxy": proxied_get,
}

#: Operations one call performs, where not one.
OPS = {
    "basics GET pipelined x100": 100,
    "cache ClientSideCache local hit": LOCAL_HITS,
    "sharding HashRing lookup": 100,
    "sharding uhashring lookup": 100,
    **{f"ratelimit labkit {n} batch x{BATCH}": BATCH for n in ALGOS},
    "queues labkit job (enqueue, work, ack)": JOBS,
    "queues rq job (enqueue, burst work)": JOBS,
}  # fmt: skip
#: Warm-up calls before counting, where not 20 (a call of 100 jobs is plenty).
WARM = {
    "queues labkit job (enqueue, work, ack)": 2,
    "queues rq job (enqueue, burst work)": 2,
}
FLOOR = "basics EVALSHA trivial"
SHARED = {
    "fixed_window": "FixedWindow",
    "sliding_log": "MovingWindow",
    "sliding_window": "SlidingWindowCounter",
}
TARGETS = [
    *(
        Target(f"{a} decision vs the trivial EVALSHA", f"ratelimit labkit {a}",
               FLOOR, 1.15, at_most=True)
        for a in ALGOS
    ),
    *(
        Target(f"{a}: fewer instructions than limits' {peer}",
               f"ratelimit limits {peer}", f"ratelimit labkit {a}", 1.2, at_most=False)
        for a, peer in SHARED.items()
    ),
    Target("fixed window: server share no more than limits'",
           "ratelimit labkit fixed_window", "ratelimit limits FixedWindow", 1.0,
           at_most=True, part="server"),
    *(
        Target(f"{a}: allow_many x{BATCH} per decision vs allow()",
               f"ratelimit labkit {a}", f"ratelimit labkit {a} batch x{BATCH}", 10.0,
               at_most=False)
        for a in ALGOS
    ),
    Target("cache hit (lock mode) vs GET + the same decode", "cache hit (lock mode)",
           "basics GET + json.loads", 1.05, at_most=True),
    Target("cache hit (xfetch) vs GET + the same decode", "cache hit (xfetch)",
           "basics GET + json.loads", 1.05, at_most=True),
    Target("a local hit vs a server GET (fewer)", "basics GET",
           "cache ClientSideCache local hit", 100.0, at_most=False),
    Target("Lock vs redis-py's Lock (fewer)", "locks redis-py Lock acquire+release",
           "locks labkit Lock acquire+release", 1.25, at_most=False),
    Target("ShardedClient.get vs a direct GET", "sharding ShardedClient.get",
           "sharding direct GET", 1.05, at_most=True),
    Target("HashRing lookup vs uhashring (fewer)", "sharding uhashring lookup",
           "sharding HashRing lookup", 2.0, at_most=False),
    Target("a job vs the trivial EVALSHA", "queues labkit job (enqueue, work, ack)",
           FLOOR, 3.0, at_most=True),
    Target("a job vs rq (fewer)", "queues rq job (enqueue, burst work)",
           "queues labkit job (enqueue, work, ack)", 10.0, at_most=False),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="a topic, or a word of labels")
    parser.add_argument("-n", type=int, default=1000, help="operations per contender")
    parser.add_argument("--jobs", type=int, default=cpu_count())
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        label, n, url = args.client
        client_main(FACTORIES, label, int(n), url, warm=WARM.get(label, 20))
        return 0
    labels = [
        label
        for label in FACTORIES
        if label.startswith(args.only) or (args.only and args.only in label)
    ]
    floor = [FLOOR] if args.only and FLOOR not in labels else []
    labels = floor + labels
    print(f"counting {len(labels)} contenders, {args.n} operations each, "
          f"{args.jobs} at a time (callgrind: minutes)", flush=True)  # fmt: skip
    per = count(
        __file__, labels, args.n, ops=OPS, jobs=args.jobs,
        progress=lambda label: print(f"  counted: {label}", flush=True),
    )  # fmt: skip
    ordered = {label: per[label] for label in labels if label in per}
    report(ordered, TARGETS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
