"""labkit.lab.proxy: latency, bandwidth, black holes, resets, partitions."""

from __future__ import annotations

import math
import os
import secrets
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from labkit.core.wait import wait_until
from labkit.lab.errors import ProxyError
from labkit.lab.proxy import (
    Partition,
    Proxy,
    announce_via,
    monitor_via,
    replicate_via,
    running_proxies,
)
from labkit.server import Sentinel, Server, free_port, no_retry

# These tests start, kill and rewire embedded servers (see conftest TIER).
pytestmark = pytest.mark.embedded


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One real server for the tests that need only an upstream."""
    with Server() as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_leaks(server: Server) -> Iterator[None]:
    """Fail a test that leaves a proxy thread, a running proxy or a socket behind."""
    threads, fds = set(threading.enumerate()), _open_fds()
    yield
    assert wait_until(lambda: set(threading.enumerate()) <= threads, 3), (
        f"threads left running: {set(threading.enumerate()) - threads}"
    )
    assert not running_proxies(), f"proxies left running: {running_proxies()}"
    assert wait_until(lambda: _open_fds() <= fds, 3), (
        f"file descriptors: {fds} before, {_open_fds()} after"
    )


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    """A started proxy in front of ``server``."""
    with Proxy.to(server) as px:
        yield px


@pytest.fixture
def clients() -> Iterator[Callable[[redis.Redis], redis.Redis]]:
    """Register a client to be closed after the test: ``r = clients(px.client())``."""
    made: list[redis.Redis] = []

    def keep(client: redis.Redis) -> redis.Redis:
        made.append(client)
        return client

    yield keep
    for client in made:
        client.close()


def _median_ping_ms(client: redis.Redis, n: int = 25) -> float:
    client.ping()  # connect first
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def test_forwards_both_ways_and_counts(proxy: Proxy, clients: Any) -> None:
    """Commands and replies cross the proxy; bytes and connections are counted."""
    r = clients(proxy.client())
    r.set("proxy:k", "v")
    assert r.get("proxy:k") == "v"
    stats = proxy.stats
    assert stats.bytes_up > 0 and stats.bytes_down > 0
    assert (stats.connections, stats.open_connections) == (1, 1)
    r.close()
    assert wait_until(lambda: proxy.stats.open_connections == 0, 3)


@pytest.mark.parametrize(
    ("knob", "low"),
    [
        (lambda px: px.set_rtt(20), 20),
        (lambda px: px.set_latency(10, direction="up"), 10),
    ],
    ids=["rtt-20ms", "up-only-10ms"],
)
def test_added_latency_within_tolerance(
    server: Server, proxy: Proxy, clients: Any, knob: Any, low: float
) -> None:
    """Every PING through the proxy waits at least the injected delay (no upper
    bound: how much more it takes depends on the machine's load)."""
    knob(proxy)
    proxied = _median_ping_ms(clients(proxy.client()))
    assert proxied >= low, f"median {proxied:.2f} ms, injected {low} ms"


@pytest.mark.timeout(60)
def test_latency_keeps_order_and_does_not_limit_throughput(
    proxy: Proxy, clients: Any
) -> None:
    """With jittered delay, a 1000-command pipeline returns in order, in far
    less time than 1000 round trips (>= 100 s here: past the test's timeout)."""
    r = clients(proxy.client())
    proxy.set_rtt(200, jitter_ms=100)
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"proxy:p{i}", i)
        pipe.get(f"proxy:p{i}")
    replies = pipe.execute()
    assert replies[1::2] == [str(i) for i in range(500)]


@pytest.mark.parametrize(
    "knob",
    [
        lambda px: None,
        lambda px: px.set_rtt(2, jitter_ms=2),
        lambda px: px.set_bandwidth(50_000_000),
    ],
    ids=["plain", "jittered-rtt", "bandwidth-cap"],
)
def test_large_values_cross_intact(proxy: Proxy, clients: Any, knob: Any) -> None:
    """A 4 MB value goes up and comes back byte for byte, whatever the knobs."""
    r = clients(proxy.client(decode_responses=False, socket_timeout=10))
    knob(proxy)
    value = secrets.token_bytes(4 * 1024 * 1024)
    r.set("proxy:large", value)
    assert r.get("proxy:large") == value
    assert proxy.stats.bytes_up > len(value) and proxy.stats.bytes_down > len(value)


def test_server_close_travels_behind_its_last_reply(
    server: Server, proxy: Proxy
) -> None:
    """When the server closes, the client gets the last reply, then end of stream."""
    proxy.set_rtt(10)
    with socket.create_connection((proxy.host, proxy.port), timeout=2) as sock:
        sock.sendall(f"AUTH {server.password}\r\nQUIT\r\n".encode())
        got = b""
        while chunk := sock.recv(100):
            got += chunk
        assert got == b"+OK\r\n+OK\r\n"
    assert wait_until(lambda: proxy.stats.open_connections == 0, 3)


def test_slow_subscriber_is_cut_by_the_output_buffer_limit(clients: Any) -> None:
    """Behind a bandwidth cap a subscriber falls behind until the server drops it."""
    config = {"client-output-buffer-limit": "pubsub 1mb 0 0"}
    with Server(config=config) as srv, Proxy.to(srv) as px:
        subscriber = clients(px.client(retry=no_retry(), socket_timeout=5))
        pubsub = subscriber.pubsub()
        pubsub.subscribe("proxy:ch")
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        px.set_bandwidth(20_000, direction="down")
        publisher = clients(srv.client())

        def dropped() -> int:
            stats = publisher.info("stats")
            return int(stats["client_output_buffer_limit_disconnections"])

        # Kernel buffers (several MB on loopback) fill first, then the
        # server's 1 MB output buffer; 50 MB is far more than both.
        published = 0
        while published < 5000 and not dropped():
            for _ in range(100):
                publisher.publish("proxy:ch", "x" * 10_000)
            published += 100
        assert dropped() == 1
        px.heal()
        received = 0
        with pytest.raises(redis.exceptions.ConnectionError):
            while pubsub.get_message(timeout=2):
                received += 1
        assert 0 < received < published
        pubsub.close()


@pytest.mark.timeout(60)
def test_bandwidth_cap_paces_a_large_reply(proxy: Proxy, clients: Any) -> None:
    """A 50 kB reply behind a 100 kB/s cap takes about half a second."""
    r = clients(proxy.client(socket_timeout=10, retry=no_retry()))
    r.set("proxy:big", "x" * 50_000)
    proxy.set_bandwidth(100_000, direction="down")
    start = time.perf_counter()
    assert len(r.get("proxy:big")) == 50_000
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.35, f"{elapsed:.2f} s for 50 kB at 100 kB/s"
    proxy.set_bandwidth(None)
    assert r.ping()


@pytest.mark.timeout(60)
def test_blackhole_times_out_then_heal_restores(proxy: Proxy, clients: Any) -> None:
    """A black hole makes the client time out by its socket timeout; heal restores."""
    r = clients(proxy.client(socket_timeout=0.3, retry=no_retry()))
    assert r.ping()
    proxy.blackhole()
    with pytest.raises(redis.exceptions.TimeoutError):
        r.ping()
    assert proxy.stats.open_connections == 1  # the connection itself stays open
    proxy.heal()
    assert r.ping()  # a new connection, nothing restarted


def test_blackhole_holds_bytes_and_delivers_them_on_heal(
    server: Server, proxy: Proxy
) -> None:
    """Bytes sent into a black hole are not lost: they arrive, in order, after heal."""
    with socket.create_connection((proxy.host, proxy.port), timeout=2) as sock:
        sock.sendall(f"AUTH {server.password}\r\n".encode())
        assert sock.recv(100) == b"+OK\r\n"
        proxy.blackhole()
        sock.sendall(b"ECHO one\r\nECHO two\r\n")
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        proxy.heal()
        sock.settimeout(2)
        got = b""
        while len(got) < len(b"$3\r\none\r\n$3\r\ntwo\r\n"):
            got += sock.recv(100)
        assert got == b"$3\r\none\r\n$3\r\ntwo\r\n"


def test_reset_sends_rst_to_open_connections(
    server: Server, proxy: Proxy, clients: Any
) -> None:
    """reset() resets every open connection; new ones work at once."""
    with socket.create_connection((proxy.host, proxy.port), timeout=2) as sock:
        sock.sendall(f"AUTH {server.password}\r\n".encode())
        assert sock.recv(100) == b"+OK\r\n"
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    assert proxy.stats.resets == 1
    assert clients(proxy.client(retry=no_retry())).ping()


def test_refuse_resets_new_connections_only(proxy: Proxy, clients: Any) -> None:
    """refuse() resets new connections while open ones keep working, until heal."""
    old = clients(proxy.client(retry=no_retry()))
    assert old.ping()
    proxy.refuse()
    new = clients(proxy.client(retry=no_retry(), socket_timeout=2))
    with pytest.raises(redis.exceptions.ConnectionError):
        new.ping()
    assert old.ping()
    assert proxy.stats.refused == 1
    proxy.heal()
    assert new.ping()


@pytest.mark.timeout(60)
def test_unreachable_upstream_resets_the_client(clients: Any) -> None:
    """An upstream that refuses gives the client a connection error, not a hang."""
    port = free_port()  # nothing listens there
    with Proxy("127.0.0.1", port) as px:
        r = clients(px.client(socket_timeout=5, retry=no_retry()))
        with pytest.raises(redis.exceptions.ConnectionError):
            r.ping()  # a reset: redis.TimeoutError is not a ConnectionError
        assert px.stats.upstream_failures == 1
        assert str(port) in px.last_upstream_error


@pytest.mark.timeout(60)
def test_upstream_that_never_answers_is_bounded(clients: Any) -> None:
    """An upstream whose accept queue is full is given up after connect_timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # one pending connection fits; the next SYN is dropped
        host, port = listener.getsockname()
        with (
            socket.create_connection((host, port), timeout=1),
            Proxy(host, port, connect_timeout=0.3) as px,
        ):
            r = clients(px.client(socket_timeout=5, retry=no_retry()))
            start = time.perf_counter()
            with pytest.raises(redis.exceptions.ConnectionError):
                r.ping()
            elapsed = time.perf_counter() - start
            assert elapsed >= 0.2, f"{elapsed:.2f} s"
            assert "0.3 s" in px.last_upstream_error


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: p.set_latency(-1), ValueError, r"ms=-1: must be a finite"),
        (lambda p: p.set_latency(NAN), ValueError, r"ms=nan: .* in 0\.\.60000"),
        (lambda p: p.set_latency(INF), ValueError, r"ms=inf"),
        (lambda p: p.set_latency(1e9), ValueError, r"ms=1000000000\.0"),
        (lambda p: p.set_latency(True), TypeError, r"ms=True: expected a number"),
        (lambda p: p.set_latency("5"), TypeError, r"ms='5'"),
        (lambda p: p.set_latency(1, jitter_ms=2), ValueError, r"jitter_ms=2 is more"),
        (lambda p: p.set_latency(1, jitter_ms=-1), ValueError, r"jitter_ms=-1"),
        (lambda p: p.set_latency(1, direction="in"), ValueError, r"direction='in'"),
        (lambda p: p.set_rtt(NAN), ValueError, r"set_rtt: ms=nan"),
        (lambda p: p.set_bandwidth(0), ValueError, r"bytes_per_s=0: .* bytes per"),
        (lambda p: p.set_bandwidth(-5), ValueError, r"bytes_per_s=-5"),
        (lambda p: p.set_bandwidth(NAN), ValueError, r"bytes_per_s=nan"),
        (lambda p: p.set_bandwidth(1e12), ValueError, r"bytes_per_s=1000000000000"),
        (lambda p: p.set_bandwidth(False), TypeError, r"bytes_per_s=False"),
        (lambda p: p.blackhole(direction="left"), ValueError, r"direction='left'"),
    ],
)
def test_bad_knob_values_are_refused(
    proxy: Proxy, call: Any, error: type[Exception], match: str
) -> None:
    """Negative, NaN, infinite, absurd or non-numeric values raise, change nothing."""
    with pytest.raises(error, match=match):
        call(proxy)
    assert proxy.events == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"upstream_port": 0}, ValueError, r"upstream_port=0"),
        ({"upstream_port": True}, TypeError, r"upstream_port=True"),
        ({"upstream_host": ""}, ValueError, r"upstream_host=''"),
        ({"port": 70000}, ValueError, r"port=70000"),
        ({"connect_timeout": 0}, ValueError, r"connect_timeout=0"),
        ({"connect_timeout": NAN}, ValueError, r"connect_timeout=nan"),
        ({"buffer_bytes": 10}, ValueError, r"buffer_bytes=10"),
    ],
)
def test_bad_constructor_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad proxy settings are refused before anything starts."""
    args: dict[str, Any] = {"upstream_host": "127.0.0.1", "upstream_port": 6379}
    with pytest.raises(error, match=match):
        Proxy(**(args | kwargs))


def test_port_in_use_is_a_clear_error(proxy: Proxy) -> None:
    """A second proxy on a taken port raises ProxyError naming the port."""
    with pytest.raises(ProxyError, match=rf"127\.0\.0\.1:{proxy.port}"):
        Proxy("127.0.0.1", proxy.upstream_port, port=proxy.port).start()


def test_stop_and_restart_on_the_same_port(server: Server, clients: Any) -> None:
    """Stopping closes every connection and the thread; a restart reuses the port."""
    px = Proxy.to(server, seed=1)
    px.set_rtt(20)  # knobs set before start apply once it runs
    px.start()
    r = clients(px.client(socket_timeout=2, retry=no_retry()))
    assert _median_ping_ms(r, n=3) >= 15
    port = px.port
    px.stop()
    assert not px.running
    with pytest.raises(redis.exceptions.ConnectionError):
        r.ping()
    px.start()
    try:
        assert px.port == port
        px.heal()
        assert r.ping()
    finally:
        px.close()


def test_partition_cuts_and_heals_every_proxy(server: Server, clients: Any) -> None:
    """A Partition black-holes all its proxies at once and heals them at once."""
    with Proxy.to(server) as a, Proxy.to(server) as b:
        ra = clients(a.client(socket_timeout=0.2, retry=no_retry()))
        rb = clients(b.client(socket_timeout=0.2, retry=no_retry()))
        with Partition({"a": a, "b": b}) as partition:
            assert partition.is_cut
            for r in (ra, rb):
                with pytest.raises(redis.exceptions.TimeoutError):
                    r.ping()
        assert not partition.is_cut
        assert ra.ping() and rb.ping()


def test_partition_between_picks_crossing_links() -> None:
    """Partition.between cuts the proxies whose links cross, and refuses wiring
    it cannot honour."""
    to_p, to_r, to_c = (Proxy("127.0.0.1", 6379) for _ in range(3))
    links = {
        ("replica", "primary"): to_p,
        ("sentinel", "primary"): to_p,
        ("sentinel", "replica"): to_r,
    }
    part = Partition.between({"primary", "client"}, {"replica", "sentinel"}, links)
    assert list(part.proxies.values()) == [to_p]
    assert list(part.proxies) == ["replica->primary, sentinel->primary"]
    with pytest.raises(ValueError, match="share"):
        Partition.between({"primary"}, {"primary", "replica"}, links)
    with pytest.raises(ValueError, match="'replica' is on neither side"):
        Partition.between({"primary"}, {"sentinel"}, links)
    with pytest.raises(ValueError, match=r"no link .* crosses"):
        Partition.between({"primary", "replica", "sentinel"}, {"client"}, links)
    shared = {**links, ("primary", "replica"): to_r}
    with pytest.raises(ValueError, match="proxies of their own"):
        Partition.between({"primary", "client"}, {"replica", "sentinel"}, shared)
    with pytest.raises(TypeError, match="expected a Proxy"):
        Partition({"x": to_c, "y": "not a proxy"})  # type: ignore[arg-type]


def _offset(server: Server) -> int:
    with server.client() as r:
        return int(r.info("replication")["master_repl_offset"])


def test_replica_behind_a_cut_proxy_falls_behind_and_catches_up(
    clients: Any,
) -> None:
    """A replica replicating through a black-holed proxy lags, then catches up."""
    pw = secrets.token_hex(8)
    primary = Server(password=pw, config={"masterauth": pw}).start()
    replica = Server(password=pw, config={"masterauth": pw}).start()
    try:
        with Proxy.to(primary) as to_primary:
            replicate_via(replica, to_primary)
            rr = clients(replica.client())
            assert wait_until(
                lambda: rr.info("replication")["master_link_status"] == "up", 15
            ), replica.log_tail(10)
            assert rr.info("replication")["master_port"] == to_primary.port
            pr = clients(primary.client())
            pr.set("proxy:before", 1)
            assert wait_until(lambda: _offset(replica) == _offset(primary), 5)
            to_primary.blackhole()
            cut_at = _offset(replica)
            for i in range(200):
                pr.set(f"proxy:during:{i}", i)
            time.sleep(0.3)
            assert _offset(replica) == cut_at < _offset(primary)
            assert rr.get("proxy:during:0") is None
            # Nothing has noticed: as in a real partition the link looks up.
            assert rr.info("replication")["master_link_status"] == "up"
            to_primary.heal()
            assert wait_until(lambda: _offset(replica) >= _offset(primary), 10)
            assert rr.get("proxy:during:199") == "199"
    finally:
        replica.close()
        primary.close()


def test_partition_fails_over_and_the_old_primary_loses_acknowledged_writes(
    clients: Any,
) -> None:
    """Split brain through proxies: Sentinel and the replica on one side promote
    the replica; the isolated primary acknowledges writes that are discarded
    when it rejoins as a replica."""
    pw = secrets.token_hex(8)
    primary = Server(password=pw, config={"masterauth": pw}).start()
    replica = Server(password=pw, config={"masterauth": pw}).start()
    sentinel: Sentinel | None = None
    to_primary, to_replica = Proxy.to(primary).start(), Proxy.to(replica).start()
    try:
        announce_via(primary, to_primary)
        announce_via(replica, to_replica)
        replicate_via(replica, to_primary)
        rr = clients(replica.client(retry=no_retry()))
        assert wait_until(
            lambda: rr.info("replication")["master_link_status"] == "up", 15
        )
        sentinel = Sentinel(primary, down_after_ms=500, failover_timeout_ms=2000)
        sentinel.start()
        monitor_via(sentinel, to_primary)
        assert sentinel.master_address() == (to_primary.host, to_primary.port)
        sc = clients(sentinel.client())

        def replica_ports() -> list[int]:
            found = sc.execute_command("SENTINEL", "REPLICAS", sentinel.name)
            return [int(r["port"]) for r in found]

        assert wait_until(lambda: replica_ports() == [to_replica.port], 15)

        client = clients(primary.client(retry=no_retry()))  # on the primary's side
        client.set("before", "1")
        assert client.wait(1, 2000) == 1
        partition = Partition.between(
            {"primary", "client"},
            {"replica", "sentinel"},
            {
                ("replica", "primary"): to_primary,
                ("sentinel", "primary"): to_primary,
                ("sentinel", "replica"): to_replica,
            },
        )
        with partition:
            for i in range(50):
                client.set(f"acked:{i}", i)  # acknowledged by the old primary
            assert wait_until(
                lambda: sentinel.master_address() == (to_replica.host, to_replica.port),
                20,
            ), sentinel.log_tail(20)
            assert wait_until(lambda: rr.info("replication")["role"] == "master", 10)
            rr.set("after", "2")

        # Sentinel demotes the old primary about 8 s after it is back; the
        # demotion drops the clients' connections, so a poll may meet a reset.
        def demoted() -> bool:
            try:
                return bool(client.info("replication")["role"] == "slave")
            except redis.ConnectionError:
                return False

        assert wait_until(demoted, 30, interval=0.1), sentinel.log_tail(20)
        assert client.info("replication")["master_port"] == to_replica.port
        assert wait_until(
            lambda: client.info("replication")["master_link_status"] == "up", 15
        )
        assert client.get("before") == "1" and client.get("after") == "2"
        assert client.get("acked:0") is None  # acknowledged, then discarded
    finally:
        for srv in (sentinel, replica, primary):
            if srv is not None:
                srv.close()
        to_primary.close()
        to_replica.close()
