"""Issue 35: tenants kept apart, foreign data left alone, counted loss is true loss.

One test per defect the issue numbers (each failed before its fix), a key
injectivity property per pattern (seeded random parts, no hypothesis), and a
foreign-data test per writing pattern: a key of the same Redis type holding
someone else's data is refused and left byte-identical (DUMP before/after).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from checks import pid_of

import labkit
from labkit.cache import Cache, GroupedCache
from labkit.core.args import check_int, check_number, check_seconds
from labkit.core.keys import from_key_part, key_part
from labkit.errors import LockError, QueueFullError, WrongTypeError
from labkit.flags import FlagStore
from labkit.locks import Lock, Redlock
from labkit.pubsub import Publisher, Subscriber, history_key
from labkit.queues import FanOut, JobQueue, Worker
from labkit.ratelimit import (
    GCRA,
    FixedWindow,
    Rate,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from labkit.server import Server, mask_url
from labkit.sharding import HashRing, ShardedClient
from labkit.timeseries import SeriesStore, to_epoch

LIMITERS = [FixedWindow, SlidingLog, SlidingWindow, TokenBucket, GCRA]
#: Parts drawn from these letters: the separators and the escape character
#: often, so collisions would be found if the rule let any through.
ALPHABET = "ab:%3A5"
ORDINARY = "abc7-_.@"


def parts(rng: random.Random, alphabet: str = ALPHABET, n: int = 3) -> str:
    """A random non-empty part of 1 to n letters."""
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, n)))


def assert_injective(build: Callable[..., list[str]], arity: int, seed: int) -> None:
    """``build(*parts)`` -> keys: different part tuples never share a key."""
    rng = random.Random(seed)
    owner: dict[str, tuple[str, ...]] = {}
    tried = set()
    for _ in range(600):
        args = tuple(parts(rng) for _ in range(arity))
        if args in tried:
            continue
        tried.add(args)
        for key in build(*args):
            assert owner.setdefault(key, args) == args, (key, owner[key], args)


def dumps(client: redis.Redis, *keys: str) -> list[bytes | None]:
    """DUMP of each key (a raw client: DUMP is binary)."""
    raw = redis.Redis(
        connection_pool=redis.ConnectionPool(
            **{**client.connection_pool.connection_kwargs, "decode_responses": False}
        )
    )
    try:
        return [raw.dump(k) for k in keys]
    finally:
        raw.close()


# --- 1. keys are injective -------------------------------------------------------


def test_key_part_is_injective_and_identity_on_ordinary_parts() -> None:
    """key_part escapes ':' and '%' reversibly and leaves every other part alone."""
    rng = random.Random(35)
    for _ in range(2000):
        text = parts(rng, ALPHABET + "{}x", 8)
        assert ":" not in key_part(text)
        assert from_key_part(key_part(text)) == text
        plain = parts(rng, ORDINARY, 8)
        assert key_part(plain) == plain


def test_cache_namespaces_do_not_collide(r: redis.Redis) -> None:
    """Defect 1: Cache "a:b" + "c" and Cache "a" + "b:c" are two entries."""
    Cache(r, "a:b", 60).set("c", 1)
    assert Cache(r, "a", 60).get_or_load("b:c", lambda: 2) == 2
    assert Cache(r, "a:b", 60).get_or_load("c", lambda: 3) == 1


def test_grouped_cache_owners_do_not_collide(r: redis.Redis) -> None:
    """Defect 1: GroupedCache "a:b" + owner "c" and "a" + owner "b:c" are apart."""
    GroupedCache(r, "a:b", 60).get_or_load("c", "k", lambda: 1)
    assert GroupedCache(r, "a", 60).get_or_load("b:c", "k", lambda: 2) == 2


@pytest.mark.parametrize("seed", [1, 2])
def test_every_pattern_builds_injective_keys(r: redis.Redis, seed: int) -> None:
    """Property: random (prefix or namespace, name) pairs never build one key twice."""
    assert_injective(lambda ns, k: [Cache(r, ns, 60).key(k)], 2, seed)
    assert_injective(lambda ns, k: [Cache(r, ns, 60).lease_key(k)], 2, seed)

    def g(ns: str) -> GroupedCache:
        return GroupedCache(r, ns, 60, per_field_expiry=False)

    assert_injective(lambda ns, o, k: [g(ns).entry_key(o, k)], 3, seed)
    assert_injective(lambda ns, o: [g(ns).gen_key(o), g(ns).index_key(o)], 2, seed)
    for cls in LIMITERS:
        assert_injective(lambda p, k, c=cls: [c(r, 5, 60, prefix=p).key(k)], 2, seed)
    assert_injective(lambda p, s: [SeriesStore(r, prefix=p).key(s)], 2, seed)
    assert_injective(lambda p, ch: [history_key(ch, p)], 2, seed)
    assert_injective(lambda p, n: [Lock(r, n, 1, prefix=p).key], 2, seed)
    assert_injective(lambda p, n: [Lock(r, n, 1, prefix=p).fence_key], 2, seed)
    assert_injective(lambda p, n: [Redlock([r], n, 1, prefix=p).key], 2, seed)
    fan = lambda p, j: [FanOut(r, prefix=p).record_key(j)]  # noqa: E731
    assert_injective(fan, 2, seed)


def test_queue_and_flag_keys_are_injective(r: redis.Redis) -> None:
    """Property (few draws: a JobQueue makes its group, a FlagStore listens)."""
    rng = random.Random(5)
    seen: dict[str, tuple[str, ...]] = {}
    for _ in range(40):
        p, n, j, s = (parts(rng) for _ in range(4))
        q = JobQueue(r, n, prefix=p)
        assert seen.setdefault(q.stream, ("q", p, n)) == ("q", p, n)
        assert seen.setdefault(q.job_key(j), ("j", p, n, j)) == ("j", p, n, j)
        once = f"{q.base}:once:{key_part(j)}:{key_part(s)}"
        assert seen.setdefault(once, ("o", p, n, j, s)) == ("o", p, n, j, s)
    flags = {}
    for ns in ("x", "x:version", "x:changed", "x%3Aversion"):
        with FlagStore(r, ns) as store:
            flags[ns] = {store.key, store.version_key, store.channel}
    for a, b in itertools.combinations(flags, 2):
        assert not flags[a] & flags[b], (a, b)


def test_ordinary_parts_keep_their_keys(r: redis.Redis) -> None:
    """Keys of parts without ':' or '%' are byte-identical to before the rule."""
    assert Cache(r, "users", 60).key(7) == "labkit:cache:{users:7}"
    assert Cache(r, "users", 60).lease_key("7") == "labkit:cache:{users:7}:lease"
    g = GroupedCache(r, "brief", 60, per_field_expiry=False)
    assert g.entry_key("u1", "k") == "labkit:cache:group:{brief:u1}:entry:k"
    fixed = FixedWindow(r, 5, 60)
    assert fixed.key("ip-1.2.3.4") == "labkit:ratelimit:fixed:ip-1.2.3.4"
    assert GCRA(r, 5, 60, prefix="ex1:batch").key("u") == "ex1:batch:u"
    assert SeriesStore(r).key("cpu") == "labkit:ts:cpu"
    assert history_key("feed") == "labkit:pubsub:{feed}"
    assert Lock(r, "counter", 1).fence_key == "labkit:lock:{counter}:fence"
    assert Redlock([r], "nightly", 1).key == "labkit:redlock:nightly"
    assert FanOut(r).record_key("big") == "labkit:fanout:{big}:record"
    assert JobQueue(r, "jobs").stream == "labkit:queue:{jobs}:stream"


# --- 2. foreign data is refused, left byte-identical ------------------------------


def test_sliding_log_leaves_a_leaderboard_alone(r: redis.Redis) -> None:
    """Defect 2: a sorted set of players at the log's key is refused, unchanged."""
    key = "labkit:ratelimit:log:board"
    r.zadd(key, {"alice": 10, "bob": 20})
    before = dumps(r, key)
    with pytest.raises(WrongTypeError, match=r"board.*'alice'|alice"):
        SlidingLog(r, 10, 60).allow("board")
    assert dumps(r, key) == before


def test_series_store_leaves_a_leaderboard_alone(r: redis.Redis) -> None:
    """Defect 2: a 5-player sorted set at a series key is refused, unchanged."""
    key = "labkit:ts:board"
    r.zadd(key, {f"p{i}": i for i in range(5)})
    before = dumps(r, key)
    with pytest.raises(WrongTypeError, match="not a SeriesStore point"):
        SeriesStore(r, max_points=3).add("board", 1_700_000_001, 42)
    assert dumps(r, key) == before
    store = SeriesStore(r, max_points=3)  # its own points are still accepted
    for t in range(5):
        store.add("ok", 1_700_000_000 + t, t)
    assert store.count("ok") == 3


@pytest.mark.parametrize(
    ("cls", "state"),
    [
        (GCRA, "nan"),
        (GCRA, "inf"),
        (GCRA, "-5"),
        (TokenBucket, {"t": "nan", "ts": "1"}),
        (TokenBucket, {"t": "inf", "ts": "1"}),
        (TokenBucket, {"t": "3", "ts": "1", "owner": "alice"}),
        (FixedWindow, {"w": "1", "n": "-4"}),
        (FixedWindow, {"w": "nan", "n": "1"}),
        (FixedWindow, {"w": "1", "n": "1", "name": "alice"}),
        (SlidingWindow, {"w": "1", "c": "nan", "p": "0"}),
        (SlidingWindow, {"w": "1", "c": "1", "p": "1", "x": "y"}),
        (SlidingLog, {"alice": 1.0}),
    ],
)
def test_corrupt_limiter_state_is_refused_by_name(
    r: redis.Redis, cls: type, state: Any
) -> None:
    """Corrupt state (NaN, inf, negative, wrong fields) is refused, never fresh."""
    lim = cls(r, 10, 60)
    key = lim.key("k")
    if isinstance(state, str):
        r.set(key, state)
    elif cls is SlidingLog:
        r.zadd(key, state)
    else:
        r.hset(key, mapping=state)
    before = dumps(r, key)
    with pytest.raises(WrongTypeError) as info:
        lim.allow("k")
    assert key in str(info.value) and info.value.key == key
    assert dumps(r, key) == before


def test_gcra_remaining_is_never_negative(r: redis.Redis) -> None:
    """Unclear case: a lookup that lowers the burst gives remaining 0, not -8."""
    now = [1000.0]
    burst = {"k": Rate(10, 10, burst=10)}
    lim = GCRA(r, 10, 10, burst=10, clock=lambda: now[0], lookup=burst.get)
    for _ in range(10):
        lim.allow("k")
    burst["k"] = Rate(10, 10, burst=1)
    decision = lim.allow("k")
    assert not decision.allowed and decision.remaining == 0


# --- 3. the publisher's numbers -------------------------------------------------


def test_eight_threads_one_publisher_nothing_counted_missed(r: redis.Redis) -> None:
    """Defect 3: 8 threads x 100 messages through one Publisher: missed == 0."""
    pub = Publisher(r)
    with Subscriber(r, ["shared"]) as sub:

        def send() -> None:
            for i in range(100):
                pub.publish("shared", i)

        workers = [threading.Thread(target=send) for _ in range(8)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert sub.wait_for(800, timeout=30)
        got = sub.drain()
    assert [m.seq for m in got] == list(range(1, 801))
    assert sub.stats.missed == 0


def test_a_refused_publish_uses_no_number(r: redis.Redis) -> None:
    """Defect 3: a publish refused with WrongTypeError leaves no gap."""
    pub = Publisher(r, history=10)
    with Subscriber(r, ["news"]) as sub:
        pub.publish("news", "one")
        r.delete(pub.history_key("news"))
        r.set(pub.history_key("news"), "not a stream")
        with pytest.raises(WrongTypeError):
            pub.publish("news", "refused")
        with pytest.raises(WrongTypeError):
            pub.publish_many("news", ["refused", "too"])
        r.delete(pub.history_key("news"))
        pub.publish("news", "two")
        assert sub.wait_for(2, timeout=10)
        got = sub.drain()
    assert [m.seq for m in got] == [1, 2] and sub.stats.missed == 0


# --- 4. a lease key of another type ----------------------------------------------


def test_a_lease_key_of_another_type_is_an_error(r: redis.Redis) -> None:
    """Defect 4: a hash at the lease key: WrongTypeError, not a silent stall."""
    c = Cache(r, "users", 60, lease_ttl=3600)  # a stall would last an hour
    r.hset(c.lease_key("k"), "f", 1)
    before = dumps(r, c.lease_key("k"))
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return 1

    with pytest.raises(WrongTypeError, match="lease"):
        c.get_or_load("k", load)
    assert loads == [] and dumps(r, c.lease_key("k")) == before


# --- 5. secrets never printed -----------------------------------------------------

SECRET = "s3cr3t"
MALFORMED = [
    "redis:/:s3cr3t@h:6379/0",
    "redis//:s3cr3t@h:6379/0",
    "redis:s3cr3t@h",
    "redis:///:s3cr3t@h",
    "redis://:s3cr3t",
    "redis://:s3cr3t@",
    "redis://u:s3cr3t@h:port/0",
    "redis://:s3cr3t@h:99999999/0",
    "redis://:s3cr3t@h:6379/zero",
    "redis://:s3cr3t@[::1/0",
    "redis://:s3cr3t@h:6379/0#frag",
    "redis://h:6379/0#s3cr3t",
    "redis://h:6379/0?password=s3cr3t",
    "redis://h:6379/0?PASSWORD=s3cr3t&db=1",
    "redis://h:6379/0?db=1&password=s3cr3t",
    "redis://h:6379/0/x@s3cr3t",
    "redis://:s3cr3t@h:6379/0 trailing",
    "redis://:s3cr3t\n@h:6379/0",
    "redis://:s3cr3t@h\t:6379/0",
    " redis://:s3cr3t@h:6379/0",
    "REDIS://:s3cr3t@h:6379/0",
    "rediss:/:s3cr3t@h",
    "unix:/:s3cr3t@/tmp/x.sock",
    "unix:///tmp/x.sock?password=s3cr3t",
    "http://:s3cr3t@h:6379/0",
    ":s3cr3t@h:6379",
    "s3cr3t",
    "redis://:s3cr3t@h@:6379/0",
    "redis://%3As3cr3t@h:6379/0",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_mask_url_hides_the_password_of_malformed_urls(url: str) -> None:
    """Defect 5: mask_url never shows the secret, whatever the URL's shape."""
    assert SECRET not in mask_url(url)


@pytest.mark.parametrize("url", MALFORMED)
def test_connect_never_prints_the_password(url: str) -> None:
    """Defect 5: labkit.connect's error (and its cause) never holds the secret."""
    try:
        client = labkit.connect(url)
    except Exception as exc:
        shown = [str(exc), repr(exc)]
        if exc.__cause__ is not None and not exc.__suppress_context__:
            shown.append(str(exc.__cause__))
        assert all(SECRET not in text for text in shown), shown
    else:  # pragma: no cover - none of these reaches a server
        client.close()
        pytest.fail(f"{url!r} connected")


def test_well_formed_urls_keep_their_shape() -> None:
    """Masking keeps everything but the secret of a well-formed URL."""
    assert mask_url("redis://:p@ss@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://u:pw@h:6379/2") == "redis://u:***@h:6379/2"
    assert mask_url("unix:///tmp/x.sock?db=1") == "unix:///tmp/x.sock?db=1"
    assert mask_url("redis://localhost:6379/15") == "redis://localhost:6379/15"


# --- 6. all or nothing -------------------------------------------------------------


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[dict[str, redis.Redis]]:
    """Two servers for ShardedClient and Redlock."""
    with Server() as a, Server() as b:
        clients = {"a": a.client(), "b": b.client()}
        yield clients
        for c in clients.values():
            c.close()


def test_sharded_mset_writes_nothing_if_one_value_is_bad(
    two_nodes: dict[str, redis.Redis],
) -> None:
    """Defect 6: mset({ka: "x", kb: None}) across two servers writes neither."""
    ring = HashRing(["a", "b"])
    keys = {ring.node_for(f"k{i}"): f"k{i}" for i in range(50)}
    sharded = ShardedClient(two_nodes, ring)
    for c in two_nodes.values():
        c.flushdb()
    for bad in (None, True, [1]):
        with pytest.raises(TypeError, match=keys["b"]):
            sharded.mset({keys["a"]: "x", keys["b"]: bad})
        assert sum(c.dbsize() for c in two_nodes.values()) == 0


def test_fanout_split_refused_leaves_nothing(r: redis.Redis) -> None:
    """Defect 6: a split the queue refuses leaves no record; a retry works."""
    fan = FanOut(r)
    with pytest.raises(ValueError, match="max_length=2"):
        fan.split(JobQueue(r, "fq", max_length=2), "big", [1, 2, 3])
    assert not r.exists(fan.record_key("big"), fan.parts_key("big"))
    busy = JobQueue(r, "busy", max_length=4)
    busy.enqueue_many([{"n": 1}, {"n": 2}])
    with pytest.raises(QueueFullError):
        fan.split(busy, "big", [1, 2, 3])
    assert not r.exists(fan.record_key("big"), fan.parts_key("big"))
    assert len(fan.split(JobQueue(r, "fq2", max_length=10), "big", [1, 2, 3])) == 3


# --- 7. Redlock servers -------------------------------------------------------------


def test_redlock_refuses_two_dbs_of_one_server(
    two_nodes: dict[str, redis.Redis],
) -> None:
    """Defect 7: db 0 and db 1 of one server are not two independent servers."""
    kw = two_nodes["a"].connection_pool.connection_kwargs
    db1 = redis.Redis(host=kw["host"], port=kw["port"], db=1)
    with pytest.raises(ValueError, match=r"clients\[1\] is the same server"):
        Redlock([two_nodes["a"], db1], "R", 5)
    db1.close()
    Redlock(list(two_nodes.values()), "R", 5)  # two servers are fine


# --- 8. the epoch range ---------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(1, 1, 1, 0, 59, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2))),
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_to_epoch_refuses_moments_outside_its_years(
    r: redis.Redis, moment: Any
) -> None:
    """Defect 8: a moment before year 1 (or after 9999) in UTC is a ValueError."""
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        to_epoch(moment)
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        SeriesStore(r).add("t", moment, 1)
    assert not r.exists(SeriesStore(r).key("t"))
    assert to_epoch(datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == (
        datetime(1, 1, 1, tzinfo=UTC).timestamp()
    )


# --- unclear cases: errors name the argument and the value ----------------------------


@pytest.mark.parametrize(
    "check",
    [
        lambda v: check_number("x", v, min=0, max=1),
        lambda v: check_seconds("x", v),
        lambda v: check_int("x", v),
    ],
)
def test_huge_ints_are_named(check: Callable[[Any], Any]) -> None:
    """10**400 is a ValueError naming the argument, not an OverflowError."""
    for value in (10**400, -(10**400)):
        with pytest.raises(ValueError, match=r"x=-?100000\.\.\.\(401 digits\)"):
            check(value)


def test_server_config_as_a_string_is_explained() -> None:
    """Server(config="appendonly yes") says to write a mapping."""
    with pytest.raises(
        TypeError, match=r"config='appendonly yes'.*'appendonly': 'yes'"
    ):
        Server(config="appendonly yes")  # type: ignore[arg-type]


def test_cache_set_nan_blames_the_value_not_the_loader(r: redis.Redis) -> None:
    """Cache.set("k", nan) names set() and the value; nothing is written."""
    with pytest.raises(TypeError, match=r"set\(\) was given value=nan") as info:
        Cache(r, "users", 60).set("k", math.nan)
    assert "loader" not in str(info.value)
    assert r.dbsize() == 0


def test_lock_release_on_a_set_names_the_key(r: redis.Redis) -> None:
    """Lock.release() on a key turned into a set: LockError naming it, not raw."""
    lock = Lock(r, "x", 60)
    lock.acquire()
    r.delete(lock.key)
    r.sadd(lock.key, "m")
    with pytest.raises(LockError, match=r"labkit:lock:\{x\} holds a set") as info:
        lock.release()
    assert "user_script" not in str(info.value)


# --- faults name the server; more foreign data --------------------------------------


def test_a_frozen_server_timeout_names_server_and_key() -> None:
    """A SIGSTOPped server: the TimeoutError (same type) names server and script."""
    with Server() as srv:
        client = srv.client(socket_timeout=0.5)
        lim = FixedWindow(client, 5, 60)
        lim.allow("k")
        os.kill(pid_of(srv), signal.SIGSTOP)
        try:
            with pytest.raises(redis.TimeoutError) as info:
                lim.allow("k")
            with pytest.raises(redis.TimeoutError) as hit:
                Cache(client, "users", 60).get_or_load("k", lambda: 1)
        finally:
            os.kill(pid_of(srv), signal.SIGCONT)
        client.close()
    assert f":{srv.port}/0" in str(info.value)
    assert "ratelimit_fixed_window" in str(info.value)
    assert "labkit:ratelimit:fixed:k" in str(info.value)
    assert f":{srv.port}/0" in str(hit.value)
    assert "labkit:cache:{users:k}" in str(hit.value)


def test_publisher_leaves_a_foreign_stream_alone(r: redis.Redis) -> None:
    """A stream of someone else's entries at the history key is refused, unchanged."""
    pub = Publisher(r, history=1)
    key = pub.history_key("orders")
    r.xadd(key, {"order": "1", "qty": "2"})
    r.xadd(key, {"order": "2", "qty": "5"})
    before = dumps(r, key)
    with pytest.raises(WrongTypeError, match=r"not \{m: <envelope>\}"):
        pub.publish("orders", "x")
    assert dumps(r, key) == before


def test_a_fresh_worker_reaps_idle_empty_consumers(r: redis.Redis) -> None:
    """Crashed workers' consumers (idle, holding nothing once claimed) are removed."""
    q = JobQueue(r, "reap", visibility_timeout=0.01)
    q.enqueue({"n": 1})
    r.xgroup_createconsumer(q.stream, "workers", "ghost-empty")
    r.xreadgroup("workers", "ghost-held", {q.stream: ">"}, count=1)  # never acked
    time.sleep(Worker.REAP_AFTER * q.visibility_timeout * 2)  # both idle long enough
    done: list[str] = []
    worker = Worker(q, lambda job: done.append(job.id), name="fresh", block=0.01)
    worker.run(burst=True, timeout=30)
    assert len(done) == 1  # ghost-held's job was claimed and run first
    assert sorted(worker.reaped) == ["ghost-empty", "ghost-held"]
    assert r.xinfo_consumers(q.stream, "workers") == []  # run() left, too
    r.xgroup_createconsumer(q.stream, "workers", "ghost-3")
    r.xgroup_createconsumer(q.stream, "workers", "restarted")
    time.sleep(Worker.REAP_AFTER * q.visibility_timeout * 2)
    again = Worker(q, lambda job: None, name="restarted", block=0.01)  # not fresh
    again.run(burst=True, timeout=30)
    assert again.reaped == []
    names = [c["name"] for c in r.xinfo_consumers(q.stream, "workers")]
    assert names == ["ghost-3"]


def test_job_queue_leaves_a_foreign_stream_alone(r: redis.Redis) -> None:
    """A stream of someone else's entries at the queue's key: refused, unchanged."""
    key = "labkit:queue:{orders}:stream"
    r.xadd(key, {"order": "1", "qty": "2"})
    before = dumps(r, key)
    q = JobQueue(r, "orders")  # no I/O yet: the first use checks
    for call in (lambda: q.enqueue({"n": 1}), q.ensure_group):
        with pytest.raises(WrongTypeError, match="not a JobQueue's"):
            call()
    assert dumps(r, key) == before and r.xinfo_groups(key) == []
    JobQueue(r, "fresh").enqueue({"n": 1})
    JobQueue(r, "fresh").ensure_group()  # its own stream is accepted again


def test_grouped_cache_leaves_a_foreign_index_alone(r: redis.Redis) -> None:
    """A sorted set of other members at an owner's index: refused, unchanged, and
    invalidate_owner does not delete the keys it names."""
    g = GroupedCache(r, "posts", 60, per_field_expiry=False)
    index = g.index_key(7)
    r.set("precious", "data")
    r.zadd(index, {"precious": 1, "alice": 2})
    before = dumps(r, index, "precious")
    with pytest.raises(WrongTypeError, match="other members"):
        g.get_or_load(7, "q", lambda: 1)
    with pytest.raises(WrongTypeError, match="other members"):
        g.invalidate_owner(7)
    assert dumps(r, index, "precious") == before
