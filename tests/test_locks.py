"""labkit.locks: Lock and Redlock on real servers, their failures, bad input, keys."""

from __future__ import annotations

import inspect
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from checks import assert_refused, audit_keys

from labkit.core.scripts import Script
from labkit.errors import LockError, LockNotOwnedError, LockTimeoutError
from labkit.lab.locks import FakeClock, FencedStore, libfaketime
from labkit.locks import Lock, Multiplexed, Redlock
from labkit.server import Cluster, Server, free_port, no_retry

pytestmark = pytest.mark.timeout(120)

RELEASE = Script("locks_release")  # the compare-and-delete script


# --- Lock: the normal path -------------------------------------------------------


def test_acquire_release_and_fences_count_up(r: redis.Redis) -> None:
    """Each acquisition gets the next fencing token; a second holder is refused."""
    a, b = Lock(r, "res", ttl=5), Lock(r, "res", ttl=5)
    first = a.acquire()
    assert first is not None and first.fence == 1 and first.votes == 1
    assert 4.5 < first.validity <= 5 and first.remaining() > 4.5
    assert r.get(a.key) == first.token and 4000 < r.pttl(a.key) <= 5000
    assert b.acquire(blocking=False) is None
    assert a.locked() and b.locked()
    a.release()
    assert not a.locked() and a.lease is None
    second = b.acquire(blocking=False)
    assert second is not None and second.fence == 2 and second.token != first.token
    b.release()
    assert r.get(a.fence_key) == "2" and r.ttl(a.fence_key) == -1


def test_release_after_expiry_raises_and_spares_the_next_holder(r: redis.Redis) -> None:
    """A holder whose lease ran out cannot release or extend the next one's lock."""
    a, b = Lock(r, "res", ttl=0.05), Lock(r, "res", ttl=5)
    a.acquire()
    time.sleep(0.1)
    lease_b = b.acquire(blocking=False)
    assert lease_b is not None
    with pytest.raises(LockNotOwnedError) as info:
        a.release()
    assert "'res'" in str(info.value) and info.value.key == "labkit:lock:{res}"
    assert r.get(b.key) == lease_b.token
    a.acquire(blocking=False)  # refused: b holds it
    with pytest.raises(LockNotOwnedError):
        a.extend()
    assert r.get(b.key) == lease_b.token and r.pttl(b.key) > 4000


def test_release_without_a_lease_raises(r: redis.Redis) -> None:
    """Releasing or extending before acquiring is an error, not a silent success."""
    lock = Lock(r, "res", ttl=1)
    with pytest.raises(LockNotOwnedError, match="holds no lease"):
        lock.release()
    with pytest.raises(LockNotOwnedError, match="holds no lease"):
        lock.extend()


def test_extend_rearms_the_expiry(r: redis.Redis) -> None:
    """extend() sets the remaining lease to the new TTL, keeping token and fence."""
    lock = Lock(r, "res", ttl=0.3)
    lease = lock.acquire()
    assert lease is not None
    longer = lock.extend(5)
    assert longer.token == lease.token and longer.fence == lease.fence
    assert r.pttl(lock.key) > 4000 and longer.remaining() > 4.5
    time.sleep(0.4)  # past the original TTL
    lock.release()


def test_one_lock_object_is_one_holder(r: redis.Redis) -> None:
    """Acquiring again on an object that holds a lease is refused clearly."""
    lock = Lock(r, "res", ttl=5)
    lock.acquire()
    with pytest.raises(LockError, match="already holds a lease"):
        lock.acquire()
    lock.release()


def test_blocking_acquire_waits_for_release_and_is_bounded(r: redis.Redis) -> None:
    """A waiter gets the lock when it is released, and gives up at its timeout."""
    holder, waiter = Lock(r, "res", ttl=5), Lock(r, "res", ttl=5)
    holder.acquire()
    started = time.monotonic()
    assert waiter.acquire(timeout=0.2) is None
    assert time.monotonic() - started >= 0.2  # it waited its timeout out
    threading.Timer(0.2, holder.release).start()
    lease = waiter.acquire(timeout=5)
    assert lease is not None and lease.fence == 2
    waiter.release()


def test_a_waiter_whose_timeout_ends_with_the_holders_lease_gets_the_lock(
    r: redis.Redis,
) -> None:
    """A lease taken just before a waiter asks, and a waiter's timeout of the
    same length: the lease ends first, so the waiter must get the lock, every
    time. (Its last try used to land in the lease's last millisecond, which the
    server still counts: half the waiters gave up.) Lock and Redlock alike."""
    gave_up = {"Lock": 0, "Redlock": 0}
    for i in range(20):
        pair = [Lock(r, f"edge:{i}", ttl=0.05) for _ in range(2)]
        reds = [Redlock([r], f"edge:{i}", ttl=0.05) for _ in range(2)]
        for kind, (holder, waiter) in (("Lock", pair), ("Redlock", reds)):
            assert holder.acquire(blocking=False) is not None
            if waiter.acquire(timeout=0.05) is None:
                gave_up[kind] += 1
            else:
                waiter.release()
        for red in reds:
            red.close()
    assert gave_up == {"Lock": 0, "Redlock": 0}


def test_a_waiter_tries_again_once_the_holders_key_can_be_gone(r: redis.Redis) -> None:
    """The acquire script answers a held lock with minus the milliseconds the
    holder's key may still live (PTTL + 1), so the waiter's next try finds it
    gone; it used to answer PTTL, and a try in the last millisecond saw 0 ("no
    expiry") and waited a random 25-75 ms more."""
    acquire = Script("locks_acquire")
    r.set("edge:held", "someone", px=30)
    assert -31 <= acquire(r, ["edge:held", "edge:held:fence"], ["me", 1000]) <= -1
    r.set("edge:held", "someone", px=1)  # 0 or 1 ms left: never answered as 0
    assert acquire(r, ["edge:held", "edge:held:fence"], ["me", 1000]) in (-1, -2, 1)
    r.set("edge:held", "someone")  # no expiry: 0
    assert acquire(r, ["edge:held", "edge:held:fence"], ["me", 1000]) == 0
    r.delete("edge:held", "edge:held:fence")


def test_context_manager_releases_and_times_out(r: redis.Redis) -> None:
    """``with lock`` releases on exit and raises LockTimeoutError when held."""
    with Lock(r, "res", ttl=5) as lease:
        assert r.get("labkit:lock:{res}") == lease.token
        with (
            pytest.raises(LockTimeoutError, match="still held"),
            Lock(r, "res", ttl=5, timeout=0.1),
        ):
            pass
    assert r.exists("labkit:lock:{res}") == 0


def test_context_manager_reports_a_lost_lease(r: redis.Redis) -> None:
    """A block that outlives its lease raises on exit; the body's own error wins."""
    with pytest.raises(LockNotOwnedError), Lock(r, "a", ttl=0.05):
        time.sleep(0.1)
    with pytest.raises(ZeroDivisionError) as info, Lock(r, "b", ttl=0.05):
        time.sleep(0.1)
        1 / 0  # noqa: B018
    assert any("no longer held" in note for note in info.value.__notes__)


def test_mutual_exclusion_under_threads(r: redis.Redis) -> None:
    """Eight threads incrementing under the lock lose no update; fences are unique."""
    r.set("counter", 0)
    fences: list[int] = []

    def work() -> None:
        lock = Lock(r, "counter", ttl=5, retry_interval=0.002)
        for _ in range(20):
            with lock as lease:
                fences.append(lease.fence or 0)
                r.set("counter", int(r.get("counter") or 0) + 1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert int(r.get("counter") or 0) == 160
    assert sorted(fences) == list(range(1, 161))


def test_a_lock_without_expiry_is_waited_for_not_taken(r: redis.Redis) -> None:
    """A foreign key with no TTL (a naive SETNX) is treated as held, boundedly."""
    r.set("labkit:lock:{res}", "somebody")
    assert Lock(r, "res", ttl=1).acquire(timeout=0.1) is None
    assert r.get("labkit:lock:{res}") == "somebody"


@pytest.mark.parametrize("decode", [True, False], ids=["str", "bytes"])
def test_either_kind_of_client_works(
    redis_url: str, two_servers: list[redis.Redis], decode: bool
) -> None:
    """decode_responses True or False: Lock and Redlock compare tokens in Lua,
    so either kind of client acquires, extends and releases the same way."""
    import labkit

    client = labkit.connect(redis_url, decode_responses=decode)
    from labkit.core.clients import client_like

    voters = [client_like(c, decode_responses=decode) for c in two_servers]
    assert all(v is not None for v in voters)
    try:
        lock = Lock(client, "either", ttl=5)
        lease = lock.acquire()
        assert lease is not None and lease.fence == 1 and isinstance(lease.fence, int)
        assert Lock(client, "either", ttl=5).acquire(blocking=False) is None
        assert lock.extend().fence == 1
        assert lock.release() is None and not lock.locked()  # type: ignore[func-returns-value]
        red = Redlock(voters, "either", ttl=5)  # type: ignore[arg-type]
        assert red.acquire() is not None
        assert red.release() is None and red.released == 2  # type: ignore[func-returns-value]
        red.close()
        client.delete(lock.fence_key)
    finally:
        client.close()
        for v in voters:
            if v is not None:
                v.close()


def test_release_returns_none_and_raises_when_the_lease_was_lost(
    r: redis.Redis, two_servers: list[redis.Redis]
) -> None:
    """Lock.release() and Redlock.release() agree: None when released, and
    LockNotOwnedError when the lease was no longer held (the key is left alone)."""
    lock = Lock(r, "lost", ttl=5)
    lock.acquire()
    r.set(lock.key, "someone else")
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert r.get(lock.key) == "someone else"
    red = Redlock(two_servers, "lost", ttl=5)
    red.acquire()
    for c in two_servers:
        c.set(red.key, "someone else")
    with pytest.raises(LockNotOwnedError):
        red.release()
    assert red.released == 0
    red.close()


# --- the holder's process dies, pauses; the server dies, freezes -------------------

_HOLDER = """
import sys, time
import labkit
from labkit.locks import Lock
lease = Lock(labkit.connect(sys.argv[1]), "job", ttl=float(sys.argv[2])).acquire()
print(lease.fence, flush=True)
time.sleep(60)
"""


def test_holder_process_killed_frees_the_lock_after_its_ttl(
    r: redis.Redis, redis_url: str
) -> None:
    """SIGKILL of the holding process: the lock frees itself within the TTL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, redis_url, "0.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "1"
        proc.kill()
        proc.wait(10)
        left = r.pttl("lab:lock:{job}")  # -2: already expired
        assert left == -2 or 0 < left <= 500  # the holder's 0.5 s TTL frees it
        lease = Lock(r, "job", ttl=5).acquire(timeout=60)
        assert lease is not None and lease.fence == 2
    finally:
        proc.kill()
        proc.wait(10)


def test_paused_holder_is_fenced_off(r: redis.Redis) -> None:
    """SIGSTOP past the TTL: a stale write is accepted without fencing, refused with."""
    from labkit.lab.locks import PauseExperiment

    with Server() as srv, PauseExperiment(srv.url, ttl=0.2) as experiment:
        plain = experiment.round(fencing=False)
        fenced = experiment.round(fencing=True)
        short = experiment.round(fencing=False, pause=0.05)
        pid = experiment.process.pid
    assert plain.a_checked > 0 and plain.pause > plain.ttl
    assert plain.stale_accepted and plain.lost_updates == 1 and not plain.a_released
    assert not fenced.stale_accepted and not fenced.a_accepted
    assert fenced.lost_updates == 0 and fenced.b_accepted
    assert (
        fenced.a_lease is not None
        and fenced.a_lease.fence is not None
        and fenced.b_lease is not None
        and fenced.b_lease.fence == fenced.a_lease.fence + 1
    )
    assert not short.stale_accepted and short.a_released and short.lost_updates == 0
    assert not experiment.process.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid or 0, 0)


def test_frozen_server_fails_within_the_socket_timeout() -> None:
    """SIGSTOP of the server: acquire raises redis.TimeoutError within seconds."""
    with Server() as srv:
        client = srv.client(retry=no_retry(), socket_timeout=0.5)
        lock = Lock(client, "res", ttl=5)
        os.kill(srv.pid or 0, signal.SIGSTOP)
        try:
            with pytest.raises(redis.TimeoutError):
                lock.acquire(timeout=1)
        finally:
            os.kill(srv.pid or 0, signal.SIGCONT)
        assert lock.acquire() is not None
        lock.release()
        client.close()


def test_server_killed_then_restarted_empty() -> None:
    """SIGKILL of the server: clear errors at once; after an empty restart the
    old holder's release raises LockNotOwnedError, and the fence starts over."""
    with Server() as srv:
        client = srv.client(retry=no_retry(), socket_timeout=1)
        lock = Lock(client, "res", ttl=5)
        assert lock.acquire() is not None
        srv.kill()
        with pytest.raises(redis.ConnectionError):
            lock.release()
        srv.restart()
        with pytest.raises(LockNotOwnedError):
            lock.release()  # the lease was kept after the failed try
        other = Lock(client, "res", ttl=5)
        lease = other.acquire()
        assert lease is not None and lease.fence == 1  # no persistence: 1 again
        other.release()
        client.close()


def test_client_kill_of_the_holders_connections() -> None:
    """CLIENT KILL of every client connection: the next release reconnects and
    works, for a Lock and for a Redlock's own connections."""
    with Server() as s1, Server() as s2, Server() as s3:
        servers = [s1, s2, s3]
        lock = Lock(s1.client(retry=no_retry(), socket_timeout=1), "res", ttl=5)
        redlock = Redlock([s.client() for s in servers], "res", ttl=5)
        assert lock.acquire() is not None and redlock.acquire() is not None
        for s in servers:
            admin = s.client()
            admin.client_kill_filter(_type="normal", skipme=True)
            admin.close()
        lock.release()
        assert redlock.release() is None  # type: ignore[func-returns-value]
        assert redlock.released == 3
        assert not lock.locked() and s2.client().exists(redlock.key) == 0
        redlock.close()


def test_unreachable_server_fails_within_seconds(r: redis.Redis) -> None:
    """A client pointing at a closed port: a ConnectionError, quickly."""
    dead = redis.Redis(port=free_port(), retry=no_retry(), socket_connect_timeout=1)
    assert_refused(
        r,
        lambda: Lock(dead, "res", ttl=1).acquire(),
        redis.ConnectionError,
        "Connection refused",
    )
    assert_refused(
        r,
        lambda: Redlock([dead], "res", ttl=1).acquire(),
        LockError,
        "only 0 of 1 servers answered",
        "majority needs 1",
    )


# --- Lock on a real cluster ------------------------------------------------------


def test_lock_on_a_real_cluster() -> None:
    """The name is a hash tag: both keys share a slot, so the script runs there."""
    with Cluster(masters=3) as cluster:
        rc = cluster.client()
        try:
            holders = [Lock(rc, name, ttl=5) for name in ("alpha", "beta", "gamma")]
            for lock in holders:
                assert lock.acquire() is not None
                assert rc.keyslot(lock.key) == rc.keyslot(lock.fence_key)
            assert len({rc.keyslot(lock.key) for lock in holders}) > 1
            assert Lock(rc, "alpha", ttl=5).acquire(blocking=False) is None
            for lock in holders:
                lock.release()
            with pytest.raises(TypeError, match="independent servers"):
                Redlock([rc], "alpha", ttl=1)  # type: ignore[list-item]
        finally:
            rc.close()


# --- Redlock ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def five() -> Iterator[list[Server]]:
    """Five independent servers for the Redlock tests."""
    servers = [Server() for _ in range(5)]
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.close()


def _clients(servers: list[Server], *, flush: bool = True) -> list[redis.Redis]:
    """Clients without retries; ``flush`` restarts stopped servers, empties all."""
    for s in servers:
        if flush:
            if not s.running:
                s.restart()
            s.client().flushdb()
    return [s.client(retry=no_retry(), socket_timeout=1) for s in servers]


def test_redlock_majority_validity_and_release(five: list[Server]) -> None:
    """All five grant; validity is the TTL less elapsed time and drift; release
    frees every server."""
    a = Redlock(_clients(five), "res", ttl=2)
    b = Redlock(_clients(five, flush=False), "res", ttl=2)
    lease = a.acquire()
    assert lease is not None and lease.votes == 5 and lease.fence is None
    assert 2 - 0.5 < lease.validity < 2 - 0.022
    assert a.quorum == 3 and b.acquire(blocking=False) is None
    assert b.last_votes == [0] * 5
    assert a.extend(3).validity > 2.5
    assert a.release() is None  # type: ignore[func-returns-value]
    assert a.released == 5
    assert all(s.client().exists(a.key) == 0 for s in five)


def test_redlock_survives_one_down_and_refuses_three(five: list[Server]) -> None:
    """Four votes of five hold the lock; with three down acquire raises clearly."""
    clients = _clients(five)
    lock = Redlock(clients, "res", ttl=2)
    five[0].kill()
    try:
        lease = lock.acquire()
        assert lease is not None and lease.votes == 4
        assert (
            Redlock(_clients(five, flush=False), "res", ttl=2).acquire(blocking=False)
            is None
        )
        assert lock.release() is None  # type: ignore[func-returns-value]
        assert lock.released == 4
        five[1].kill()
        five[2].kill()
        with pytest.raises(LockError, match="only 2 of 5 servers answered"):
            lock.acquire(timeout=0.3)
        assert five[3].client().exists(lock.key) == 0  # released after failing
    finally:
        for s in five[:3]:
            s.restart()


def test_redlock_frozen_server_costs_only_the_server_timeout(
    five: list[Server],
) -> None:
    """SIGSTOP of one server: acquire still succeeds, within about server_timeout
    (the clients have no socket timeout: without it, it would hang)."""
    _clients(five)  # restarted and emptied
    untimed = [s.client(retry=no_retry(), socket_timeout=None) for s in five]
    lock = Redlock(untimed, "res", ttl=2, server_timeout=0.2)
    os.kill(five[4].pid or 0, signal.SIGSTOP)
    try:
        lease = lock.acquire()
        assert lease is not None and lease.votes == 4
        assert isinstance(lock.last_votes[4], redis.TimeoutError)
    finally:
        os.kill(five[4].pid or 0, signal.SIGCONT)
    assert lock.release() is None  # type: ignore[func-returns-value]
    assert lock.released >= 4  # the frozen server ran the SET after all, maybe


def _bare_majority(five: list[Server]) -> tuple[Redlock, Redlock]:
    a = Redlock(_clients(five), "res", ttl=5)
    b = Redlock(_clients(five, flush=False), "res", ttl=5)
    for s in five[3:]:
        s.client().set(a.key, "competitor", px=10_000)
    lease = a.acquire(blocking=False)
    assert lease is not None and lease.votes == 3
    for s in five[3:]:
        s.client().delete(a.key)
    return a, b


def test_redlock_restart_without_persistence_makes_two_holders(
    five: list[Server],
) -> None:
    """A holds servers 0-2; server 0 restarts empty; B gets a majority during A's
    lease, and A's release then raises LockNotOwnedError."""
    a, b = _bare_majority(five)
    five[0].kill()
    five[0].restart()
    lease_b = b.acquire(blocking=False)
    assert lease_b is not None and lease_b.votes == 3
    assert a.lease is not None and a.lease.remaining() > 0  # two holders at once
    with pytest.raises(LockNotOwnedError, match="only 2 of 5"):
        a.release()
    assert b.release() is None  # type: ignore[func-returns-value]
    assert b.released == 3


def test_redlock_restart_with_aof_always_keeps_the_lease() -> None:
    """With appendfsync always the restarted server reloads A's key: B is refused."""
    aof = {"appendonly": "yes", "appendfsync": "always"}
    servers = [Server(config=aof) for _ in range(5)]
    try:
        for s in servers:
            s.start()
        a, b = _bare_majority(servers)
        servers[0].kill()
        servers[0].restart()
        assert b.acquire(blocking=False) is None
        assert a.release() is None  # type: ignore[func-returns-value]
        assert a.released == 3
    finally:
        for s in servers:
            s.close()


def test_redlock_extend_after_loss_releases_and_raises(five: list[Server]) -> None:
    """extend() without a majority raises and removes the holder's remaining keys."""
    a, _ = _bare_majority(five)
    five[1].client().delete(a.key)
    five[2].client().delete(a.key)
    with pytest.raises(LockNotOwnedError, match="cannot extend"):
        a.extend()
    assert all(s.client().exists(a.key) == 0 for s in five)


def test_redlock_context_manager(five: list[Server]) -> None:
    """``with Redlock`` acquires and releases; a held lock times out clearly."""
    clients = _clients(five)
    with Redlock(clients, "ctx", ttl=2) as lease:
        assert lease.votes == 5
        with (
            pytest.raises(LockTimeoutError, match="no majority"),
            Redlock(_clients(five, flush=False), "ctx", ttl=2, timeout=0.1),
        ):
            pass
    assert all(s.client().exists("labkit:redlock:ctx") == 0 for s in five)


def test_multiplexed_relies_on_redis_py_connection_api() -> None:
    """The connection-level calls Multiplexed uses are there (7.4.1, 8.1, 8.2)."""
    from redis.connection import AbstractConnection, ConnectionPool

    params = inspect.signature(AbstractConnection.read_response).parameters
    # redis-py 8 reads with a timeout of its own; 7.x waits with can_read
    # first (labkit.locks._multiplex.read_reply picks the way).
    assert ("timeout" in params) == (int(redis.__version__.split(".")[0]) >= 8)
    assert callable(AbstractConnection.send_command)
    assert "timeout" in inspect.signature(AbstractConnection.can_read).parameters
    pool = ConnectionPool(host="127.0.0.1", port=1)
    assert issubclass(pool.connection_class, AbstractConnection)
    assert pool.connection_kwargs["port"] == 1
    with Server() as srv:
        client = srv.client()
        client.set("labkit:lock:{x}", "tok")
        servers = Multiplexed([client], timeout=1.0)
        assert servers.call(RELEASE, ["labkit:lock:{x}"], ["other"]) == [0]
        assert servers.call(RELEASE, ["labkit:lock:{x}"], ["tok"]) == [1]
        assert client.exists("labkit:lock:{x}") == 0
        servers.close()
        client.close()


def test_multiplexed_is_bounded_on_fresh_connections_to_frozen_servers() -> None:
    """Two servers frozen before any connection exists: one call still returns
    within about its timeout, with the live server's answer."""
    with Server() as live, Server() as frozen1, Server() as frozen2:
        clients = [s.client(socket_timeout=None) for s in (frozen1, live, frozen2)]
        for s in (frozen1, frozen2):
            os.kill(s.pid or 0, signal.SIGSTOP)
        try:
            servers = Multiplexed(clients, timeout=0.3)
            replies = servers.call(RELEASE, ["k"], ["tok"])
            assert replies[1] == 0
            assert isinstance(replies[0], redis.TimeoutError)
            assert isinstance(replies[2], redis.TimeoutError)
        finally:
            for s in (frozen1, frozen2):
                os.kill(s.pid or 0, signal.SIGCONT)
        assert servers.call(RELEASE, ["k"], ["tok"]) == [0, 0, 0]
        servers.close()
        for c in clients:
            c.close()


# --- bad input: refused before anything is written ---------------------------------


def _where(client: redis.Redis) -> dict[str, Any]:
    """The host and port of a client, to open another db of the same server."""
    kw = client.connection_pool.connection_kwargs
    return {"host": kw["host"], "port": kw["port"]}


@pytest.fixture
def two_servers() -> Iterator[list[redis.Redis]]:
    """Two servers' clients, for Redlock argument checks."""
    with Server() as s1, Server() as s2:
        clients = [s1.client(), s2.client()]
        yield clients
        for c in clients:
            c.close()


def _bad_lock_calls(r: redis.Redis) -> list[tuple[Any, ...]]:
    lock = Lock(r, "ok", ttl=1)
    return [
        (
            lambda: Lock("redis://x", "a", 1),  # type: ignore[arg-type]
            TypeError,
            "client='redis://x'",
            "redis.Redis",
        ),
        (lambda: Lock(r, "", 1), ValueError, "name=''", "non-empty"),
        (lambda: Lock(r, "{a}", 1), ValueError, "name='{a}'", "must not contain"),
        (lambda: Lock(r, "a}", 1), ValueError, "name='a}'", "must not contain"),
        (lambda: Lock(r, None, 1), TypeError, "name=None", "non-empty str"),  # type: ignore[arg-type]
        (lambda: Lock(r, ["a"], 1), TypeError, "name=['a']", "non-empty str"),  # type: ignore[arg-type]
        (lambda: Lock(r, "a", math.nan), ValueError, "ttl=nan", "finite number"),
        (lambda: Lock(r, "a", math.inf), ValueError, "ttl=inf", "86400"),
        (lambda: Lock(r, "a", -1), ValueError, "ttl=-1", "from 0.001"),
        (lambda: Lock(r, "a", 0), ValueError, "ttl=0", "from 0.001"),
        (lambda: Lock(r, "a", 10**400), ValueError, "ttl=100000...(401", "86400"),
        (lambda: Lock(r, "a", 10**9), ValueError, "ttl=1000000000", "86400"),
        (lambda: Lock(r, "a", True), TypeError, "ttl=True", "finite number"),
        (lambda: Lock(r, "a", "5"), TypeError, "ttl='5'", "finite number"),  # type: ignore[arg-type]
        (
            lambda: Lock(r, "a", 1, timeout=math.nan),
            ValueError,
            "timeout=nan",
            "finite",
        ),
        (lambda: Lock(r, "a", 1, timeout=-1), ValueError, "timeout=-1", "from 0"),
        (
            lambda: Lock(r, "a", 1, retry_interval=0),
            ValueError,
            "retry_interval=0",
            "0.001",
        ),
        (
            lambda: Lock(r, "a", 1, prefix="x{"),
            ValueError,
            "prefix='x{'",
            "must not contain",
        ),
        (lambda: lock.acquire(timeout=math.inf), ValueError, "timeout=inf", "finite"),
        (
            lambda: lock.acquire(blocking="no"),  # type: ignore[arg-type]
            TypeError,
            "blocking='no'",
            "True or False",
        ),
        (lambda: lock.extend(ttl=-2), ValueError, "ttl=-2", "from 0.001"),
        (
            lambda: FencedStore(r, "s", fencing=1),  # type: ignore[arg-type]
            TypeError,
            "fencing=1",
            "True or False",
        ),
        (lambda: FencedStore(r, "{}"), ValueError, "name='{}'", "must not contain"),
        (
            lambda: FencedStore(r, "s").write("x", 1, token=-1, writer="w"),
            redis.ResponseError,
            "token must be a whole number",
        ),
    ]


def test_bad_lock_arguments_are_refused(r: redis.Redis) -> None:
    """Every bad argument of Lock / FencedStore: a clear error, nothing written."""
    cases = _bad_lock_calls(r)
    for call, error, *words in cases:
        assert_refused(r, call, error, *words)


def test_bad_redlock_arguments_are_refused(
    r: redis.Redis, two_servers: list[redis.Redis]
) -> None:
    """Every bad argument of Redlock: a clear error, nothing written."""
    c1, c2 = two_servers
    cases: list[tuple[Any, ...]] = [
        (
            lambda: Redlock(r, "a", 1),  # type: ignore[arg-type]
            TypeError,
            "must be a list of redis.Redis",
            "[client]",
        ),
        (lambda: Redlock("abc", "a", 1), TypeError, "clients='abc'"),  # type: ignore[arg-type]
        (lambda: Redlock([], "a", 1), ValueError, "0 given", "1 to 99"),
        (lambda: Redlock([c1, c1], "a", 1), ValueError, "clients[1]", "same server"),
        (
            lambda: Redlock([c1, redis.Redis(**_where(c1), db=1)], "a", 1),
            ValueError,
            "clients[1]",
            "another db of one server",
        ),
        (lambda: Redlock([c1, "x"], "a", 1), TypeError, "client='x'", "Redlock"),  # type: ignore[list-item]
        (lambda: Redlock([c1, c2], "", 1), ValueError, "name=''"),
        (lambda: Redlock([c1, c2], "a{", 1), ValueError, "name='a{'"),
        (lambda: Redlock([c1, c2], "a", math.nan), ValueError, "ttl=nan"),
        (lambda: Redlock([c1, c2], "a", 0), ValueError, "ttl=0"),
        (
            lambda: Redlock([c1, c2], "a", 1, server_timeout=0),
            ValueError,
            "server_timeout=0",
        ),
        (
            lambda: Redlock([c1, c2], "a", 1, drift_factor=1),
            ValueError,
            "drift_factor=1",
            "0.5",
        ),
        (
            lambda: Redlock([c1, c2], "a", 1, drift_factor=True),
            TypeError,
            "drift_factor=True",
        ),
        (lambda: Redlock([c1, c2], "a", 1, timeout=-0.5), ValueError, "timeout=-0.5"),
        (
            lambda: Redlock([c1, c2], "a", 1).acquire(timeout=math.nan),
            ValueError,
            "timeout=nan",
        ),
    ]
    for call, error, *words in cases:
        assert_refused(r, call, error, *words)
        for c in two_servers:
            assert c.dbsize() == 0


def test_wrong_type_keys_are_refused_before_any_write(
    r: redis.Redis, two_servers: list[redis.Redis]
) -> None:
    """A lock or fence key holding something else: a LockError naming it, no write."""
    r.hset("labkit:lock:{a}", "f", "v")
    assert_refused(
        r,
        lambda: Lock(r, "a", 1).acquire(),
        LockError,
        "'a'",
        "labkit:lock:{a} holds a hash",
    )
    r.set("labkit:lock:{b}:fence", "not a number")
    assert_refused(
        r,
        lambda: Lock(r, "b", 1).acquire(),
        LockError,
        "labkit:lock:{b}:fence holds a string",
        "not a fencing counter",
    )
    r.rpush("labkit:lock:{c}:fence", "x")
    assert_refused(r, lambda: Lock(r, "c", 1).acquire(), LockError, "holds a list")
    c1, c2 = two_servers
    c2.sadd("labkit:redlock:a", "x")
    err = assert_refused(
        r,
        lambda: Redlock([c1, c2], "a", 1).acquire(),
        LockError,
        "Redlock 'a'",
        "holds a set",
    )
    assert err.key == "labkit:redlock:a"
    assert c1.exists("labkit:redlock:a") == 0  # its vote was taken back


# --- keys ----------------------------------------------------------------------------


def test_strict_store_refuses_an_equal_token_from_another_writer(
    r: redis.Redis,
) -> None:
    """Strict fencing: the writer that brought a token may reuse it, no other."""
    store = FencedStore(r, "strict", strict=True)
    assert store.write("doc", "b1", token=2, writer="B")
    assert store.write("doc", "b2", token=2, writer="B")  # the same holder again
    assert not store.write("doc", "c1", token=2, writer="C")  # same number, other
    assert not store.write("doc", "a", token=1, writer="A")  # older
    assert store.write("doc", "c2", token=3, writer="C")  # a fresh number
    assert store.read("doc") == "c2"
    plain = FencedStore(r, "plain")
    assert plain.write("doc", "b", token=2, writer="B")
    assert plain.write("doc", "c", token=2, writer="C")  # equal tokens pass
    with pytest.raises(ValueError, match="strict=True needs fencing=True"):
        FencedStore(r, "x", fencing=False, strict=True)
    with pytest.raises(TypeError, match="strict=1"):
        FencedStore(r, "x", strict=1)  # type: ignore[arg-type]


def test_keys_audit(r: redis.Redis) -> None:
    """After normal use every key is documented; those without a TTL say why."""
    lock = Lock(r, "audit", ttl=5)
    lock.acquire()
    held = Redlock([r], "audit", ttl=5)
    held.acquire()
    store = FencedStore(r, "audit")
    store.write("x", 1, token=1, writer="w")
    seen = audit_keys(r, Lock, Redlock, FencedStore)
    assert set(seen) == {
        "labkit:lock:{audit}",
        "labkit:lock:{audit}:fence",
        "labkit:redlock:audit",
        "lab:storage:{audit}:data",
        "lab:storage:{audit}:fence",
        "lab:storage:{audit}:holder",
        "lab:storage:{audit}:log",
    }
    lock.release()
    held.release()


@pytest.mark.skipif(libfaketime() is None, reason="libfaketime is not installed")
def test_a_clock_jump_on_one_server_gives_redlock_two_holders() -> None:
    """One server's wall clock steps past the lease: B gets a majority too."""
    clock = FakeClock()
    servers = [Server(binary=clock.binary)] + [Server() for _ in range(4)]
    try:
        for s in servers:
            s.start()
        clients = [s.client(socket_timeout=1) for s in servers]
        a = Redlock(clients, "jump", 60, server_timeout=0.2)
        b = Redlock(clients, "jump", 60, server_timeout=0.2)
        for i in (3, 4):
            clients[i].set(a.key, "competitor", px=10_000)
        lease = a.acquire()
        assert lease is not None and lease.votes == 3
        for i in (3, 4):
            clients[i].delete(a.key)
        assert b.acquire(blocking=False) is None  # steady clocks: one holder
        clock.jump(120)
        lease_b = b.acquire(blocking=False)
        assert lease_b is not None and lease_b.votes == 3 and lease.remaining() > 0
        assert "<valkey-server>" in clock.script and "<tmp>" in clock.script
    finally:
        for s in servers:
            s.close()
        clock.close()


def test_fake_clock_refuses_bad_steps() -> None:
    """A step that is not a finite number of seconds within a day is refused."""
    clock = FakeClock()
    try:
        for bad in (math.nan, 10**6, "1"):
            with pytest.raises((TypeError, ValueError), match="seconds"):
                clock.jump(bad)  # type: ignore[arg-type]
    finally:
        clock.close()
