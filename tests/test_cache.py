"""labkit.cache against a real server: accounting, TTLs, invalidation, stampedes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

import labkit
from labkit.cache import Cache, ClientSideCache, GroupedCache, supports_field_expiry
from labkit.lab.caching import get_on_new_connection, herd_trial, ttl_trace

MODES = ["none", "lock", "xfetch"]


class Counted:
    """A loader standing in for the origin: counts calls, optionally slow or failing."""

    def __init__(self, value: Any = "v", delay: float = 0.0) -> None:
        self.value, self.delay, self.calls = value, delay, 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def wait_gone(r: redis.Redis, key: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while r.exists(key) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not r.exists(key)


def assert_every_key_expires(r: redis.Redis) -> None:
    keys = list(r.scan_iter("*"))
    assert keys, "expected the cache to have written keys"
    for key in keys:
        assert r.pttl(key) > 0, f"{key} has no TTL"
        if r.type(key) == "hash":
            fields = r.hkeys(key)
            assert all(t > 0 for t in r.hpttl(key, *fields)), f"{key} field w/o TTL"


@pytest.mark.parametrize("mode", MODES)
def test_hit_miss_accounting_is_exact(r: redis.Redis, mode: str) -> None:
    """A scripted sequence of reads gives exactly the expected hits, misses, loads."""
    cache = Cache(r, namespace="acct", ttl=60, stampede=mode, rng=random.Random(1))
    users, photos = Counted({"id": 1}), Counted([1, 2])
    assert cache.get_or_load("u:1", users) == {"id": 1}
    assert cache.get_or_load("u:1", users) == {"id": 1}
    assert cache.get_or_load("photos", photos) == [1, 2]
    assert cache.get_or_load("u:1", users) == {"id": 1}
    cache.invalidate("u:1")
    assert cache.get_or_load("u:1", users) == {"id": 1}
    s = cache.stats
    assert (s.hits, s.misses, s.loads, s.load_errors) == (2, 3, 3, 0)
    assert (users.calls, photos.calls) == (2, 1)
    assert [o for o, _ in s.samples] == ["miss", "hit", "miss", "hit", "miss"]
    assert s.hit_ratio == pytest.approx(0.4)
    assert {row["outcome"] for row in s.records()} == {"hit", "miss"}


@pytest.mark.parametrize("mode", MODES)
def test_ttl_is_honoured(r: redis.Redis, mode: str) -> None:
    """An entry carries the TTL asked for and is reloaded once it has expired."""
    cache = Cache(r, namespace="ttl", ttl=0.3, stampede=mode, rng=random.Random(2))
    loader = Counted()
    cache.get_or_load("k", loader)
    assert 0 < r.pttl(cache.key("k")) <= 300
    wait_gone(r, cache.key("k"))
    cache.get_or_load("k", loader)
    assert loader.calls == 2


def test_jitter_only_stretches_the_ttl(r: redis.Redis) -> None:
    """With jitter=0.5 every TTL lies between ttl and 1.5 * ttl, and they differ."""
    cache = Cache(r, namespace="jit", ttl=100, jitter=0.5, rng=random.Random(3))
    for i in range(20):
        cache.get_or_load(i, lambda: 1)
    ttls = [r.pttl(cache.key(i)) for i in range(20)]
    assert all(99_000 <= t <= 150_000 for t in ttls)
    assert len(set(ttls)) > 10


@pytest.mark.parametrize("mode", MODES)
def test_invalidate_forces_a_reload(r: redis.Redis, mode: str) -> None:
    """invalidate() deletes the entry (True, then False) and the next read loads."""
    cache = Cache(r, namespace="inv", ttl=60, stampede=mode)
    loader = Counted()
    cache.get_or_load("k", loader)
    assert cache.invalidate("k") is True
    assert cache.invalidate("k") is False
    cache.get_or_load("k", loader)
    assert loader.calls == 2


@pytest.mark.parametrize("per_field", [True, False], ids=["hexpire", "key-per-entry"])
def test_grouped_invalidation(r: redis.Redis, per_field: bool) -> None:
    """invalidate_owner() drops all of one owner's entries and no one else's."""
    cache = GroupedCache(r, "posts", ttl=60, per_field_expiry=per_field)
    for owner in (1, 2):
        for query in ("all", "tag=redis", "likes>10"):
            cache.get_or_load(owner, query, Counted(f"{owner}:{query}"))
    assert cache.get_or_load(1, "all", Counted("never")) == "1:all"
    assert cache.invalidate_owner(1) == 3
    assert cache.invalidate_owner(1) == 0
    assert cache.get_or_load(1, "all", Counted("fresh")) == "fresh"
    assert cache.get_or_load(2, "all", Counted("never")) == "2:all"
    assert cache.invalidate(2, "all") is True
    assert cache.stats.loads == 7 and cache.stats.hits == 2


@pytest.mark.parametrize("per_field", [True, False], ids=["hexpire", "key-per-entry"])
def test_grouped_entries_really_expire(r: redis.Redis, per_field: bool) -> None:
    """Each grouped entry expires on its own, and the group key goes with the last."""
    cache = GroupedCache(r, "exp", ttl=0.25, per_field_expiry=per_field)
    cache.get_or_load(7, "old", lambda: 1)
    time.sleep(0.15)
    cache.get_or_load(7, "new", lambda: 2)
    assert_every_key_expires(r)
    time.sleep(0.15)  # "old" has expired, "new" has not
    assert cache.get_or_load(7, "old", Counted("reloaded")) == "reloaded"
    assert cache.get_or_load(7, "new", Counted("never")) == 2
    deadline = time.monotonic() + 5
    while r.dbsize() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.dbsize() == 0


def test_field_expiry_is_detected(r: redis.Redis) -> None:
    """The bundled Valkey has HEXPIRE, so the default grouped cache uses it."""
    assert supports_field_expiry(r) is True
    assert GroupedCache(r, "d", ttl=1).per_field_expiry is True


def test_no_key_is_left_without_a_ttl(r: redis.Redis) -> None:
    """Every key any cache writes, leases included, has a TTL."""
    for mode in MODES:
        cache = Cache(r, namespace=f"all-{mode}", ttl=60, stampede=mode)
        for i in range(5):
            cache.get_or_load(i, lambda: {"n": 1})
        cache.set("direct", [1])
    for per_field in (True, False):
        grouped = GroupedCache(r, f"g-{per_field}", ttl=60, per_field_expiry=per_field)
        for i in range(3):
            grouped.get_or_load("u1", i, lambda: "x")
    slow = Cache(r, namespace="lease", ttl=60)
    seen: list[int] = []
    slow.get_or_load("k", lambda: seen.append(r.pttl(slow.key("k") + ":lease")))
    assert seen and seen[0] > 0  # the lease, while the loader runs
    assert_every_key_expires(r)


def test_single_flight_loads_once_per_expiry(r: redis.Redis) -> None:
    """32 threads reading one expired key call the origin exactly once, every expiry."""
    cache = Cache(r, namespace="sf", ttl=0.3, stampede="lock")
    loader = Counted("hot", delay=0.05)
    for expiry in range(3):
        wait_gone(r, cache.key("hot"))
        barrier = threading.Barrier(32)
        results: list[Any] = []

        def read(barrier: threading.Barrier, results: list[Any]) -> None:
            barrier.wait()
            results.append(cache.get_or_load("hot", loader))

        threads = [
            threading.Thread(target=read, args=(barrier, results)) for _ in range(32)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert results == ["hot"] * 32
        assert loader.calls == expiry + 1
    assert cache.stats.waits >= 1


def test_without_protection_concurrent_misses_all_load(r: redis.Redis) -> None:
    """With stampede='none' the same 32 readers call the origin more than once."""
    cache = Cache(r, namespace="herd", ttl=60, stampede="none")
    loader = Counted("hot", delay=0.05)
    barrier = threading.Barrier(32)

    def read() -> None:
        barrier.wait()
        cache.get_or_load("hot", loader)

    threads = [threading.Thread(target=read) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert loader.calls > 1


@pytest.mark.parametrize("mode", MODES)
def test_failing_loader_caches_nothing_and_reraises(r: redis.Redis, mode: str) -> None:
    """A loader's exception propagates; nothing is stored, no lease is left."""
    cache = Cache(r, namespace="fail", ttl=60, stampede=mode)
    with pytest.raises(ConnectionRefusedError, match="origin down"):
        cache.get_or_load("k", Counted(ConnectionRefusedError("origin down")))
    assert r.dbsize() == 0
    assert cache.stats.load_errors == 1
    assert cache.get_or_load("k", Counted("ok")) == "ok"
    assert cache.get_or_load("k", Counted("never")) == "ok"


@pytest.mark.parametrize("mode", MODES)
def test_unserialisable_value_raises_type_error(r: redis.Redis, mode: str) -> None:
    """A value JSON cannot encode raises a TypeError naming the key and type."""
    cache = Cache(r, namespace="ser", ttl=60, stampede=mode)
    with pytest.raises(TypeError, match=r"'lab:cache:ser:\{k\}'.*set"):
        cache.get_or_load("k", lambda: {1, 2})
    assert r.dbsize() == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ttl": 0}, ValueError, "ttl=0"),
        ({"ttl": -5}, ValueError, "ttl=-5"),
        ({"ttl": "60"}, TypeError, "ttl='60'"),
        ({"namespace": ""}, ValueError, "namespace=''"),
        ({"namespace": "a{b}"}, ValueError, "namespace='a{b}'"),
        ({"namespace": 3}, TypeError, "namespace=3"),
        ({"stampede": "mutex"}, ValueError, "stampede='mutex'.*lock"),
        ({"jitter": 2}, ValueError, "jitter=2"),
        ({"lease_ttl": 0}, ValueError, "lease_ttl=0"),
    ],
)
def test_bad_arguments_are_named(
    r: redis.Redis, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad constructor arguments raise ValueError/TypeError naming the argument."""
    args = {"namespace": "ok", "ttl": 60, **kwargs}
    with pytest.raises(error, match=match):
        Cache(r, **args)


def test_bad_loader_and_client_are_named(r: redis.Redis) -> None:
    """A non-callable loader, a bad key or a non-client raise TypeError naming it."""
    cache = Cache(r, namespace="ok", ttl=60)
    with pytest.raises(TypeError, match="loader='users'"):
        cache.get_or_load("k", "users")
    with pytest.raises(TypeError, match="key=None"):
        cache.get_or_load(None, lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="client='redis://"):
        Cache("redis://localhost", namespace="ok", ttl=60)
    with pytest.raises(ValueError, match="ttl=0"):
        GroupedCache(r, "g", ttl=0)


@pytest.mark.parametrize(("mode", "stale_kept"), [("none", True), ("lock", False)])
def test_delete_on_write_race(r: redis.Redis, mode: str, stale_kept: bool) -> None:
    """A write landing mid-load leaves the stale value cached only without a lease."""
    cache = Cache(r, namespace="race", ttl=60, stampede=mode)
    db = {"name": "old"}

    def read_then_write_lands() -> dict[str, str]:
        row = dict(db)  # the reader has read the origin...
        db["name"] = "new"  # ...then a writer updates it and invalidates
        cache.invalidate("user")
        return row

    assert cache.get_or_load("user", read_then_write_lands) == {"name": "old"}
    cached = cache.get_or_load("user", lambda: dict(db))
    assert cached == ({"name": "old"} if stale_kept else {"name": "new"})


def test_xfetch_recomputes_early_with_probability(r: redis.Redis) -> None:
    """XFetch reloads a live entry when beta is huge, and never when it is tiny."""
    eager = Cache(r, "xf", ttl=60, stampede="xfetch", beta=1e9, rng=random.Random(4))
    loader = Counted("v", delay=0.01)
    eager.get_or_load("k", loader)
    eager.get_or_load("k", loader)
    assert loader.calls == 2 and eager.stats.early_recomputes == 1
    calm = Cache(r, "xf", ttl=60, stampede="xfetch", beta=1e-9, rng=random.Random(4))
    for _ in range(20):
        calm.get_or_load("k", loader)
    assert loader.calls == 2 and calm.stats.hits == 20


def test_decorator_caches_by_arguments(r: redis.Redis) -> None:
    """@cache.cached keys entries by arguments and exposes invalidate()."""
    cache = Cache(r, namespace="deco", ttl=60)
    calls: list[int] = []

    @cache.cached
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    assert square.invalidate(3) is True
    assert square(3) == 9 and calls == [3, 4, 3]
    with pytest.raises(TypeError, match="JSON-serialisable"):
        square(object())


@pytest.fixture
def resp3(redis_url: str) -> Iterator[redis.Redis]:
    client = labkit.connect(redis_url, protocol=3)
    yield client
    client.close()


def test_client_side_cache_is_invalidated_by_another_client(
    r: redis.Redis, resp3: redis.Redis
) -> None:
    """A local copy serves reads until another client writes; then it is refetched."""
    r.set("city", "Lima")
    with ClientSideCache(resp3) as local:
        assert [local.get("city") for _ in range(3)] == ["Lima"] * 3
        assert (local.stats.misses, local.stats.hits) == (1, 2)
        r.set("city", "Oslo")  # another connection writes
        assert local.wait_invalidated("city", timeout=5)
        assert local.get("city") == "Oslo"
        assert local.invalidations == 1 and local.stats.misses == 2
        r.flushdb()
        assert local.wait_invalidated("city", timeout=5)
        assert local.get("city") is None


def test_client_side_cache_needs_resp3(r: redis.Redis) -> None:
    """A RESP2 client is refused with a ValueError naming the protocol."""
    with pytest.raises(ValueError, match="protocol=3"):
        ClientSideCache(r)


def test_latency_samples_keep_the_latest(r: redis.Redis) -> None:
    """Samples are a ring of the latest max_samples reads, oldest first."""
    cache = Cache(r, namespace="ring", ttl=60, max_samples=3)
    cache.get_or_load("k", lambda: 1)
    for _ in range(4):
        cache.get_or_load("k", lambda: 1)
    assert [o for o, _ in cache.stats.samples] == ["hit", "hit", "hit"]
    assert cache.stats.latencies("hit").shape == (3,)
    cache.stats.reset()
    assert cache.stats.samples == [] and cache.stats.hits == 0
    cache.invalidate("k")
    cache.get_or_load("k", lambda: 1)
    cache.get_or_load("k", lambda: 1)
    assert [o for o, _ in cache.stats.samples] == ["miss", "hit"]


HERD = [("none", 8), ("lock", 1), ("xfetch", 8)]


@pytest.mark.parametrize(("mode", "expected"), HERD)
def test_herd_trial_counts_are_exact(r: redis.Redis, mode: str, expected: int) -> None:
    """Eight readers of an expired key: eight origin calls, or one with the lock."""
    for _ in range(2):
        assert herd_trial(r, mode, 8, load_seconds=0.01) == expected
    assert r.dbsize() == 0


@pytest.mark.parametrize("per_field", [True, False], ids=["hexpire", "key-per-entry"])
def test_entry_ttls_list_every_entry(r: redis.Redis, per_field: bool) -> None:
    """entry_ttls() gives each entry's remaining TTL in both modes, {} once dropped."""
    cache = GroupedCache(r, "ttls", ttl=60, per_field_expiry=per_field)
    for query in ("b", "a"):
        cache.get_or_load(7, query, lambda: 1)
    ttls = cache.entry_ttls(7)
    assert list(ttls) == ["a", "b"] and all(0 < ms <= 60_000 for ms in ttls.values())
    assert 0 < r.pttl(cache.group_key(7)) <= 60_000
    cache.invalidate_owner(7)
    assert cache.entry_ttls(7) == {}


def test_ttl_trace_never_runs_past_its_duration(r: redis.Redis) -> None:
    """1 s of reads with a 0.4 s TTL: at most three loads, one per TTL period."""
    cache = Cache(r, namespace="trace", ttl=0.4)
    times, ttls, loads = ttl_trace(cache, "k", lambda: 1, duration=1.0, step=0.05)
    assert times[-1] < 1.0 and ttls[0] == 0 and 2 <= loads[-1] <= 3
    assert set(np.diff(loads)) <= {0, 1}


def test_get_on_new_connection_opens_one_per_call(r: redis.Redis) -> None:
    """Each call opens (and closes) its own connection."""
    r.set("k", "v")
    before = r.info("stats")["total_connections_received"]
    assert [get_on_new_connection(r, "k") for _ in range(3)] == ["v"] * 3
    assert r.info("stats")["total_connections_received"] - before >= 3
