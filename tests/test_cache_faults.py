"""labkit.cache under faults on real servers: a killed or frozen server mid-load,
a dead lease holder, and a real cluster.

Each test starts its own server (or cluster) and stops it; clients use no
retries and a short socket timeout, so a fault shows as a clear error (the
module's pytest timeout catches a hang), and each test asserts what a reader
sees afterwards.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import redis
from checks import pid_of

from labkit.cache import Cache, ClientSideCache, GroupedCache
from labkit.core.clients import supports
from labkit.server import Cluster, Server, no_retry

MODES = ["lock", "none", "xfetch"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        yield server


def quick_client(server: Server) -> redis.Redis:
    """No retries, 1 s socket timeout: faults surface at once."""
    return server.client(socket_timeout=1, socket_connect_timeout=1, retry=no_retry())


def timed(call: Any) -> tuple[BaseException | None, float, Any]:
    """Run ``call()``; return (exception or None, seconds it took, result)."""
    start = time.monotonic()
    try:
        result = call()  # before the clock is read again (it used to be after)
    except Exception as exc:
        return exc, time.monotonic() - start, None
    return None, time.monotonic() - start, result


@pytest.mark.parametrize("mode", MODES)
def test_server_killed_during_a_load(srv: Server, mode: str) -> None:
    """SIGKILL while the loader runs: a ConnectionError within seconds; after a
    restart the next read loads once and caches again."""
    client = quick_client(srv)
    cache = Cache(client, "k", ttl=60, stampede=mode)
    calls: list[int] = []

    def loader_that_sees_the_crash() -> dict[str, int]:
        calls.append(1)
        srv.kill()
        return {"n": 1}

    error, _, _ = timed(lambda: cache.get_or_load("u", loader_that_sees_the_crash))
    assert isinstance(error, redis.ConnectionError)
    assert cache.stats.loads == 1 and cache.stats.misses == 1
    srv.restart()
    assert cache.get_or_load("u", lambda: {"n": 2}) == {"n": 2}
    assert cache.get_or_load("u", lambda: {"n": 3}) == {"n": 2}
    client.close()


@pytest.mark.parametrize("mode", MODES)
def test_server_frozen_during_a_load(srv: Server, mode: str) -> None:
    """SIGSTOP while the loader runs: a TimeoutError within seconds; after SIGCONT
    every key has a TTL and reads work again."""
    client = quick_client(srv)
    cache = Cache(client, "k", ttl=60, stampede=mode)

    def loader_that_freezes_the_server() -> dict[str, int]:
        os.kill(pid_of(srv), signal.SIGSTOP)
        return {"n": 1}

    try:
        error, _, _ = timed(
            lambda: cache.get_or_load("u", loader_that_freezes_the_server)
        )
    finally:
        os.kill(pid_of(srv), signal.SIGCONT)
    assert isinstance(error, redis.TimeoutError)
    client.close()
    client = quick_client(srv)
    assert all(client.pttl(k) > 0 for k in client.scan_iter())
    cache = Cache(client, "k", ttl=60, stampede=mode)
    assert cache.get_or_load("u", lambda: {"n": 2}) in ({"n": 1}, {"n": 2})
    client.close()


def test_waiters_of_a_frozen_server_give_up_within_seconds(srv: Server) -> None:
    """Readers waiting on another's lease, server frozen: each fails within seconds."""
    client = quick_client(srv)
    cache = Cache(client, "w", ttl=60, lease_ttl=30)
    client.set(cache.lease_key("hot"), "someone", px=30_000)  # a load in flight
    outcomes: list[BaseException | None] = []

    def waiter() -> None:
        error, _, _ = timed(lambda: cache.get_or_load("hot", lambda: 1))
        outcomes.append(error)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    os.kill(pid_of(srv), signal.SIGSTOP)
    try:
        for t in threads:
            t.join(timeout=60)
    finally:
        os.kill(pid_of(srv), signal.SIGCONT)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 4
    assert all(isinstance(e, redis.TimeoutError) for e in outcomes)
    client.close()


def test_dead_lease_holder_costs_one_lease_ttl(srv: Server) -> None:
    """A lease left by a crashed loader: readers wait at most lease_ttl, then load
    without storing (fail open); after the lease expires, stores resume."""
    client = quick_client(srv)
    cache = Cache(client, "d", ttl=60, lease_ttl=0.3)
    client.set(cache.lease_key("hot"), "crashed-holder", px=5000)
    error, took, value = timed(lambda: cache.get_or_load("hot", lambda: "v1"))
    assert error is None and value == "v1" and took >= 0.3  # waited its lease_ttl
    assert cache.stats.loads == 1 and cache.stats.waits == 1
    # Nothing stored unleased: had it waited out the holder's lease, it would
    # have taken the lease and stored v1.
    assert not client.exists(cache.key("hot"))
    assert wait(lambda: not client.exists(cache.lease_key("hot")), 15)
    assert cache.get_or_load("hot", lambda: "v2") == "v2"
    assert client.get(cache.key("hot")) == '"v2"'
    client.close()


def test_a_lease_that_expires_as_the_wait_ends_is_taken_over(srv: Server) -> None:
    """A lease taken just before a reader arrives runs out as the reader's wait
    does: the reader takes the lease over, loads once and stores its value,
    every time. It used to fail open, storing nothing, when its last look
    came within the lease's last millisecond (1 time in 10 with the defaults;
    here a single poll lands there)."""
    client = quick_client(srv)
    cache = Cache(client, "e", ttl=60, lease_ttl=0.05, poll_interval=0.05)
    unstored = []
    for i in range(20):
        client.set(cache.lease_key(f"k{i}"), "slow-holder", px=50)
        assert cache.get_or_load(f"k{i}", partial(int, i)) == i
        if client.get(cache.key(f"k{i}")) != str(i):
            unstored.append(i)
    assert unstored == []
    assert cache.stats.loads == 20 and cache.stats.waits == 20
    client.close()


def test_grouped_cache_server_killed_during_a_load(srv: Server) -> None:
    """SIGKILL in a grouped load: a ConnectionError within seconds, then recovery."""
    client = quick_client(srv)
    cache = GroupedCache(client, "g", ttl=60)

    def loader() -> list[int]:
        srv.kill()
        return [1]

    error, _, _ = timed(lambda: cache.get_or_load(7, "q", loader))
    assert isinstance(error, redis.ConnectionError)
    srv.restart()
    assert cache.get_or_load(7, "q", lambda: [2]) == [2]
    assert cache.get_or_load(7, "q", lambda: [3]) == [2]
    client.close()


def test_store_refused_for_memory_still_answers(srv: Server) -> None:
    """A full server (noeviction): reads still return the loaded value, the refused
    stores are counted, nothing is half-written and no lease is left behind."""
    client = quick_client(srv)
    cache = Cache(client, "oom", ttl=60)
    cache.get_or_load("warm", lambda: 1)  # loads the scripts before the limit
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 50_000)
    big = "x" * 10_000
    for i in range(20):
        assert cache.get_or_load(i, lambda: big) == big
    assert cache.stats.store_errors > 0 and cache.stats.loads == 21
    assert all(client.pttl(k) > 0 for k in client.scan_iter())
    assert not list(client.scan_iter("*:lease"))
    client.close()


# --- the client-side cache -------------------------------------------------------
def csc_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ClientSideCache")]


def first_error(call: Any, timeout: float = 10) -> tuple[BaseException | None, float]:
    """Call ``call()`` every 20 ms until it raises; (the error, seconds until then)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            call()
        except Exception as exc:
            return exc, time.monotonic() - start
        time.sleep(0.02)
    return None, time.monotonic() - start


def test_local_cache_server_killed_and_restarted(srv: Server) -> None:
    """SIGKILL: within seconds reads fail instead of answering from the local copy;
    after a restart tracking is re-armed and invalidations work again."""
    writer = quick_client(srv)
    writer.set("city", "Lima")
    local = ClientSideCache(srv.client(), timeout=1).start()
    assert local.get("city") == "Lima" and "city" in local
    srv.kill()
    error, _ = first_error(lambda: local.get("city"), timeout=60)
    assert isinstance(error, redis.ConnectionError)
    assert "city" not in local and not local.armed
    assert local.tracking.down_since is not None
    srv.restart()
    writer = quick_client(srv)
    writer.set("city", "Oslo")
    assert wait(lambda: local.get("city") == "Oslo" and local.armed, 5)
    assert local.get("city") == "Oslo" and "city" in local
    writer.set("city", "Paris")
    assert local.wait_invalidated("city", timeout=5)
    assert local.get("city") == "Paris"
    assert local.tracking.rearms >= 1 and local.tracking.down_since is None
    assert local.tracking.downtime > 0
    local.close()
    writer.close()
    assert not csc_threads()


def test_local_cache_server_frozen(srv: Server) -> None:
    """SIGSTOP (as in a partition, where others may still write): within seconds the
    local copy is dropped and reads fail; after SIGCONT tracking is back."""
    writer = quick_client(srv)
    writer.set("city", "Lima")
    local = ClientSideCache(srv.client(), timeout=1).start()
    assert local.get("city") == "Lima"
    os.kill(pid_of(srv), signal.SIGSTOP)
    try:
        error, _ = first_error(lambda: local.get("city"), timeout=60)
        assert isinstance(error, redis.TimeoutError | redis.ConnectionError)
        assert "city" not in local
    finally:
        os.kill(pid_of(srv), signal.SIGCONT)
    writer.close()
    writer = quick_client(srv)
    writer.set("city", "Oslo")
    assert wait(lambda: local.get("city") == "Oslo" and local.armed, 10)
    writer.set("city", "Paris")
    assert local.wait_invalidated("city", timeout=5)
    assert local.get("city") == "Paris"
    assert local.listener_stats.unresponsive + local.tracking.disconnects >= 1
    local.close()
    writer.close()
    assert not csc_threads()


def wait(condition: Any, timeout: float) -> bool:
    """Poll ``condition`` (errors count as False) until true or ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        time.sleep(0.05)
    return False


# --- a real cluster ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(masters=3) as c:
        yield c


@pytest.mark.parametrize("mode", MODES)
def test_cache_on_a_cluster(cluster: Cluster, mode: str) -> None:
    """Reads, leases, write-through and invalidation work on a 3-node cluster."""
    rc = cluster.client()
    cache = Cache(rc, f"c-{mode}", ttl=60, stampede=mode)
    for i in range(30):  # keys on every node
        assert cache.get_or_load(i, partial(dict, n=i)) == {"n": i}
    assert cache.get_or_load(5, lambda: None) == {"n": 5}
    cache.set(5, {"n": 50})
    assert cache.get_or_load(5, lambda: None) == {"n": 50}
    assert cache.invalidate(5) is True
    assert cache.get_or_load(5, lambda: {"n": 51}) == {"n": 51}
    slots = {rc.keyslot(cache.key(i)) for i in range(30)}
    assert len({rc.get_node_from_key(cache.key(i)).name for i in range(30)}) == 3
    assert len(slots) > 20
    rc.close()


@pytest.mark.parametrize("per_field", [None, False])
def test_grouped_cache_on_a_cluster(cluster: Cluster, per_field: Any) -> None:
    """Grouped entries, their counter and index share a slot; invalidation works."""
    rc = cluster.client()
    cache = GroupedCache(rc, f"g-{per_field}", ttl=60, per_field_expiry=per_field)
    assert cache.per_field_expiry == (
        per_field is None and supports(rc, "hash-field-ttl")
    )
    for owner in range(10):
        for q in ("a", "b"):
            cache.get_or_load(owner, q, partial("{}{}".format, owner, q))
    assert cache.get_or_load(3, "a", lambda: None) == "3a"
    assert sorted(cache.entry_ttls(3)) == ["a", "b"]
    assert cache.invalidate_owner(3) == 2 and cache.entry_ttls(3) == {}
    assert cache.invalidate(4, "a") is True
    assert cache.get_or_load(4, "a", lambda: "new") == "new"
    rc.close()


def test_client_side_cache_refuses_a_cluster(cluster: Cluster) -> None:
    """A RedisCluster is refused with a TypeError saying why."""
    rc = cluster.client()
    with pytest.raises(
        TypeError, match="ClientSideCache does not work on a RedisCluster"
    ):
        ClientSideCache(rc)  # type: ignore[arg-type]
    rc.close()
