"""labkit.cache.ClientSideCache on a real server: invalidations, and reconnects.

The fault tests kill one of its two connections with ``CLIENT KILL``; before
the fix the cache kept serving its local copy with tracking gone (no more
invalidations, stale values forever) or raised on every call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import labkit
from labkit.cache import ClientSideCache
from labkit.core.wait import wait_until


@pytest.fixture
def local(redis_url: str) -> Iterator[ClientSideCache]:
    client = labkit.connect(redis_url)
    with ClientSideCache(client) as cache:
        yield cache
    client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("ClientSide")]


def connection(r: redis.Redis, cache: ClientSideCache, role: str) -> dict[str, Any]:
    """CLIENT LIST entry of the cache's "reads" or "invalidations" connection."""
    name = f"{cache.name}-{role}"
    found = [c for c in r.client_list() if c["name"] == name]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode", [True, False])
def test_invalidated_by_another_client(
    r: redis.Redis, redis_url: str, protocol: int, decode: bool
) -> None:
    """A local copy serves reads until another client writes; then it is refetched."""
    client = labkit.connect(redis_url, protocol=protocol, decode_responses=decode)
    r.set("city", "Lima")
    lima, oslo = ("Lima", "Oslo") if decode else (b"Lima", b"Oslo")
    with ClientSideCache(client) as local:
        assert [local.get("city") for _ in range(3)] == [lima] * 3
        assert (local.stats.misses, local.stats.hits) == (1, 2)
        r.set("city", "Oslo")  # another connection writes
        assert local.wait_invalidated("city", timeout=5)
        assert local.get("city") == oslo
        assert local.invalidations == 1 and local.stats.misses == 2
    client.close()


def test_flush_drops_every_local_copy(r: redis.Redis, local: ClientSideCache) -> None:
    """FLUSHDB invalidates everything: the local copy is emptied."""
    r.mset({"a": "1", "b": "2"})
    assert [local.get("a"), local.get("b")] == ["1", "2"] and len(local) == 2
    r.flushdb()
    assert wait_until(lambda: len(local) == 0, 5)
    assert local.get("a") is None and local.tracking.flushes == 1


def test_missing_keys_are_not_kept(r: redis.Redis, local: ClientSideCache) -> None:
    """A GET that finds nothing keeps nothing: the next read asks the server again."""
    assert local.get("nothing") is None and local.get("nothing") is None
    assert local.stats.misses == 2 and len(local) == 0


def test_local_copy_is_bounded(redis_url: str, r: redis.Redis) -> None:
    """max_entries keeps the latest fetched entries only (oldest fetched out first)."""
    client = labkit.connect(redis_url)
    r.mset({f"k{i}": str(i) for i in range(5)})
    with ClientSideCache(client, max_entries=3) as local:
        for i in range(5):
            local.get(f"k{i}")
        local.get("k2")
        assert len(local) == 3 and "k0" not in local and "k2" in local
    client.close()


def test_reads_connection_killed(r: redis.Redis, local: ClientSideCache) -> None:
    """CLIENT KILL of the tracking connection: the cache notices within a check
    interval, drops its copy, reconnects and re-arms tracking; a write made while
    it was untracked is not served stale for long, and invalidations work again."""
    r.set("city", "Lima")
    assert local.get("city") == "Lima"
    assert "t" in connection(r, local, "reads")["flags"]  # tracking is on
    r.client_kill_filter(_id=connection(r, local, "reads")["id"])
    r.set("city", "Oslo")  # no invalidation: that connection is gone
    assert wait_until(lambda: local.get("city") == "Oslo", 2)
    assert local.tracking.disconnects == 1 and local.tracking.rearms == 1
    assert "t" in connection(r, local, "reads")["flags"]
    r.set("city", "Paris")
    assert local.wait_invalidated("city", timeout=5)
    assert local.get("city") == "Paris" and local.armed


def test_invalidation_connection_killed(r: redis.Redis, local: ClientSideCache) -> None:
    """CLIENT KILL of the listener's connection: it reconnects, tracking is
    redirected to the new connection, the local copy is dropped (it may have
    missed invalidations) and invalidations arrive again."""
    r.set("city", "Lima")
    assert local.get("city") == "Lima"
    old = connection(r, local, "invalidations")["id"]
    r.client_kill_filter(_id=old)
    assert wait_until(lambda: local.listener_stats.reconnects == 1, 5)
    assert wait_until(lambda: local.tracking.rearms == 1, 5)
    assert connection(r, local, "invalidations")["id"] != old
    assert "city" not in local and local.tracking.flushes == 1
    assert local.get("city") == "Lima"
    r.set("city", "Oslo")
    assert local.wait_invalidated("city", timeout=5)
    assert local.get("city") == "Oslo"
    assert local.tracking.down_since is None


def test_connect_callback_rearms_tracking(
    r: redis.Redis, local: ClientSideCache
) -> None:
    """redis-py calls the cache back on every reconnect (a little-documented API:
    if this fails after a redis-py upgrade, ClientSideCache re-arms no more)."""
    r.set("city", "Lima")
    local.get("city")
    local._conn.disconnect()  # what redis-py does on a broken socket
    assert wait_until(lambda: local.get("city") and local.tracking.rearms == 1, 2)
    assert local.armed and local.tracking.flushes == 1
    assert "t" in connection(r, local, "reads")["flags"]


def test_closed_cache_refuses_reads(redis_url: str) -> None:
    """After close() a read raises a clear error; no thread is left."""
    client = labkit.connect(redis_url)
    local = ClientSideCache(client)
    local.close()
    with pytest.raises(labkit.errors.TrackingError, match="closed"):
        local.get("city")
    client.close()


def test_lifecycle_no_io_before_start(r: redis.Redis, redis_url: str) -> None:
    """The constructor connects nowhere and starts no thread; a read before
    start() says what to do; start() returns the cache; a closed cache stays closed."""
    from labkit.errors import TrackingError

    client = labkit.connect(redis_url)
    before = {c["name"] for c in r.client_list()}
    local = ClientSideCache(client)
    assert not [t for t in threading.enumerate() if t.name.startswith("ClientSide")]
    assert local.name + "-reads" not in {c["name"] for c in r.client_list()} - before
    assert repr(local).endswith("not started, 0 entries>")
    with pytest.raises(TrackingError, match="not started: call start"):
        local.get("city")
    assert local.start() is local and local.start() is local and local.armed
    r.set("city", "Lima")
    assert local.get("city") == "Lima" and local.get("city") == "Lima"
    assert (local.stats.misses, local.stats.hits) == (1, 1)
    local.close()
    local.close()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("ClientSide")]
    with pytest.raises(TrackingError, match="closed"):
        local.get("city")
    with pytest.raises(TrackingError, match="closed"):
        local.start()
    client.close()


def test_int_keys_and_hits_without_a_clock(
    r: redis.Redis, local: ClientSideCache
) -> None:
    """An int key is the str key: the first read fetches, the next ones hit."""
    r.set("7", "seven")
    assert [local.get(7), local.get("7"), local.get(7)] == ["seven"] * 3
    assert (local.stats.misses, local.stats.hits) == (1, 2)
