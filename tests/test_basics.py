"""labkit.lab.basics and its plots: chapter 00's wire, round-trip and race helpers."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib
import pytest
import redis
from checks import as_str, assert_refused

from labkit.core.wait import wait_until
from labkit.lab.basics import (
    Wire,
    client_via,
    in_threads,
    median_ping_ms,
    parse_replies,
    pipeline_curves,
    proxy_for,
    sample,
    server_usec_per_call,
)
from labkit.lab.errors import WireError
from labkit.lab.plots.basics import (
    batch_bars,
    expiry_timeline,
    hash_growth,
    time_per_command,
)
from labkit.lab.plots.basics import (
    pipeline_curves as plot_pipeline_curves,
)
from labkit.lab.proxy import Proxy, running_proxies
from labkit.server import Server, no_retry

matplotlib.use("Agg")


def resp(*args: object) -> bytes:
    """One command in RESP (the notebook's encoder)."""
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = str(arg).encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    """Fail a test that leaves a thread or a proxy running."""
    threads = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(threading.enumerate()) - threads, "threads left running"
    assert not running_proxies(), f"proxies left running: {running_proxies()}"


@pytest.fixture
def wire(r: redis.Redis) -> Iterator[Wire]:
    """A wire to the tests' server and database."""
    with Wire.to(r) as w:
        yield w


# --- parse_replies ------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "replies", "used"),
    [
        (b"+OK\r\n", ["OK"], 5),
        (b":42\r\n", [42], 5),
        (b"$5\r\nhello\r\n", ["hello"], 11),
        (b"$-1\r\n", [None], 5),
        (b"*-1\r\n", [None], 5),
        (b"*2\r\n+OK\r\n:11\r\n", [["OK", 11]], 14),
        (b"$3\r\nhel", [], 0),  # cut short: left for later
        (b"*2\r\n+OK\r\n", [], 0),
        (b"+A\r\n+B\r\n+C", ["A", "B"], 8),
    ],
    ids=["simple", "int", "bulk", "nil", "nil-arr", "array", "cut", "cut-arr", "two"],
)
def test_parse_replies(data: bytes, replies: list[Any], used: int) -> None:
    """Each RESP2 type parses; an incomplete reply is left unparsed."""
    assert parse_replies(data) == (replies, used)


def test_parse_replies_errors_and_limit() -> None:
    """An error reply is returned as a ResponseError; limit stops early."""
    (err,), used = parse_replies(b"-ERR no\r\n")
    assert isinstance(err, redis.ResponseError) and str(err) == "ERR no"
    assert used == 9
    assert parse_replies(b"+A\r\n+B\r\n", limit=1) == (["A"], 4)
    with pytest.raises(ValueError, match="not a RESP2 reply"):
        parse_replies(b"?what\r\n")


# --- Wire ---------------------------------------------------------------------
def test_wire_get_pipeline_and_transaction(r: redis.Redis, wire: Wire) -> None:
    """A command, a pipeline and a transaction, bytes each way, replies parsed."""
    r.set("city", "Paris")
    one = wire.send(resp("GET", "city"))
    assert one.sent == b"*2\r\n$3\r\nGET\r\n$4\r\ncity\r\n"
    assert one.received == b"$5\r\nParis\r\n" and one.replies == ["Paris"]
    three = wire.send(resp("SET", "n", 1) + resp("INCR", "n") + resp("GET", "n"), 3)
    assert three.replies == ["OK", 2, "2"]
    assert three.received == b"+OK\r\n:2\r\n$1\r\n2\r\n"
    tx = wire.send(resp("MULTI") + resp("INCR", "n") + resp("EXEC"), replies=3)
    assert tx.replies == ["OK", "QUEUED", [3]]
    assert "sent" in str(one) and "received" in str(one)


def test_wire_queued_and_execabort(r: redis.Redis, wire: Wire) -> None:
    """Commands answer QUEUED one by one; a queue-time error aborts the EXEC."""
    assert wire.send(resp("MULTI")).replies == ["OK"]
    assert wire.send(resp("SET", "balance", 0)).replies == ["QUEUED"]
    (bad,) = wire.send(resp("INCR")).replies
    assert isinstance(bad, redis.ResponseError)
    (aborted,) = wire.send(resp("EXEC")).replies
    assert str(aborted).startswith("EXECABORT") and r.exists("balance") == 0


def test_wire_send_bytes_reads_exactly_the_replies(r: redis.Redis, wire: Wire) -> None:
    """send_bytes returns the replies' bytes unparsed; a wrong count is refused."""
    r.set("k", "v")
    assert wire.send_bytes(resp("GET", "k") * 50, 7 * 50) == b"$1\r\nv\r\n" * 50
    assert wire.send(resp("PING")).replies == ["PONG"]  # the wire is still in step
    wire.send(resp("PING") + resp("PING"), replies=1)  # leaves one reply unread
    with pytest.raises(WireError, match="still unread"):
        wire.send_bytes(resp("GET", "k"), 7)
    with Wire.to(r) as fresh:
        assert fresh.send_bytes(resp("GET", "k") + resp("PING"), 7 + 7).endswith(
            b"+PONG\r\n"
        )
        with pytest.raises(WireError, match="7 bytes came, 3 expected"):
            fresh.send_bytes(resp("GET", "k"), 3)  # one 7-byte reply, in one write
        assert fresh._sock.fileno() < 0  # closed after a miscount


def test_wire_keeps_unawaited_replies_for_the_next_send(wire: Wire) -> None:
    """Replies past those awaited are not lost: the next send starts with them."""
    first = wire.send(resp("PING") + resp("ECHO", "later"), replies=1)
    assert first.replies == ["PONG"] and first.received == b"+PONG\r\n"
    second = wire.send(resp("ECHO", "now"), replies=2)
    assert second.replies == ["later", "now"]


def test_wire_authenticates_without_showing_the_password() -> None:
    """A wrong password fails with WireError; the password is not in the message."""
    with Server(password="s3cret-pw") as srv:
        with Wire.to(srv.client()) as ok:
            assert ok.send(resp("PING")).replies == ["PONG"]
        with pytest.raises(WireError) as info:
            Wire(srv.host, srv.port, password="wrong-pw-123")
        assert "wrong-pw-123" not in str(info.value) and "AUTH" in str(info.value)


def test_wire_selects_the_clients_database(r: redis.Redis, redis_url: str) -> None:
    """Wire.to uses the client's database: what it writes, the client reads."""
    with Wire.to(r) as w:
        w.send(resp("SET", "wire:db", "here"))
    assert r.get("wire:db") == "here"


# --- bad input ----------------------------------------------------------------
def _bad_inputs(r: redis.Redis, wire: Wire) -> list[tuple[Any, type, tuple[str, ...]]]:
    run = lambda c, b: None  # noqa: E731
    work = lambda c: None  # noqa: E731
    return [
        (lambda: Wire("", 6379), ValueError, ("host=''", "non-empty str")),
        (lambda: Wire(1, 6379), TypeError, ("host=1", "str")),  # type: ignore[arg-type]
        (lambda: Wire("127.0.0.1", True), TypeError, ("port=True", "an int")),
        (lambda: Wire("127.0.0.1", 70000), ValueError, ("port=70000", "65535")),
        (lambda: Wire("127.0.0.1", 1, timeout=math.nan), ValueError, ("timeout=nan",)),
        (lambda: Wire("127.0.0.1", 1, timeout=0), ValueError, ("timeout=0", "> 0")),
        (lambda: Wire.to("redis://x"), TypeError, ("client='redis://x'", "Redis")),  # type: ignore[arg-type]
        (lambda: wire.send("PING"), TypeError, ("payload='PING'", "bytes")),  # type: ignore[arg-type]
        (lambda: wire.send(b""), TypeError, ("payload=b''", "non-empty bytes")),
        (lambda: wire.send(resp("PING"), 0), ValueError, ("replies=0", "from 1")),
        (lambda: wire.send(resp("PING"), 1.5), TypeError, ("replies=1.5", "an int")),  # type: ignore[arg-type]
        (lambda: proxy_for("r"), TypeError, ("client='r'", "redis.Redis")),  # type: ignore[arg-type]
        (lambda: client_via(r, "px"), TypeError, ("proxy='px'", "Proxy")),  # type: ignore[arg-type]
        (lambda: median_ping_ms(r, 0), ValueError, ("n=0", "from 1")),
        (lambda: median_ping_ms(r, True), TypeError, ("n=True", "an int")),
        (lambda: pipeline_curves(None, {"a": r}, [1]), TypeError, ("run=None",)),  # type: ignore[arg-type]
        (lambda: pipeline_curves(run, r, [1]), TypeError, ("clients=", "label")),  # type: ignore[arg-type]
        (lambda: pipeline_curves(run, {}, [1]), TypeError, ("clients={}",)),
        (lambda: pipeline_curves(run, {"a": r}, "1"), TypeError, ("batch_sizes='1'",)),  # type: ignore[arg-type]
        (lambda: pipeline_curves(run, {"a": r}, []), ValueError, ("batch_sizes=[]",)),
        (lambda: pipeline_curves(run, {"a": r}, [0]), ValueError, ("item=0",)),
        (
            lambda: pipeline_curves(run, {"a": r}, [1], rounds=math.inf),  # type: ignore[arg-type]
            TypeError,
            ("rounds=inf",),
        ),
        (
            lambda: pipeline_curves(run, {"a": r}, [1], calls=-1),
            ValueError,
            ("calls=-1",),
        ),
        (lambda: in_threads(work, "ab", 1), TypeError, ("clients='ab'", "list")),
        (lambda: in_threads(work, [], 1), ValueError, ("len(clients)=0",)),
        (lambda: in_threads(work, [r], 0), ValueError, ("times=0",)),
        (lambda: in_threads(work, [r], 1, timeout=-1), ValueError, ("timeout=-1",)),
        (lambda: in_threads(42, [r], 1), TypeError, ("work=42", "callable")),  # type: ignore[arg-type]
        (lambda: server_usec_per_call(r, "", r.ping), ValueError, ("command=''",)),
        (
            lambda: server_usec_per_call(r, "get", r.ping, calls=0),
            ValueError,
            ("calls=0",),
        ),
        (
            lambda: sample(r.dbsize, seconds=math.nan, every=0.1),
            ValueError,
            ("seconds=nan",),
        ),
        (lambda: sample(r.dbsize, seconds=1, every=2), ValueError, ("every=2", "<= 1")),
        (lambda: sample("dbsize", seconds=1, every=0.1), TypeError, ("fn='dbsize'",)),  # type: ignore[arg-type]
    ]


def test_bad_input_is_refused(r: redis.Redis, wire: Wire) -> None:
    """Every bad argument: a clear TypeError/ValueError naming it, nothing written."""
    cases = _bad_inputs(r, wire)
    assert len(cases) >= 30
    for call, error, words in cases:
        assert_refused(r, call, error, *words)


def test_fn_without_the_command_is_refused(r: redis.Redis) -> None:
    """server_usec_per_call says so when fn never runs the command it times."""
    assert_refused(
        r, lambda: server_usec_per_call(r, "zrange", r.ping), ValueError, "'zrange'"
    )


def test_unix_socket_client_is_refused_by_wire_and_proxy() -> None:
    """A client on a unix socket gets a clear ValueError, not a confusing crash."""
    client = redis.Redis(unix_socket_path="/tmp/nowhere.sock")
    for call in (lambda: Wire.to(client), lambda: proxy_for(client)):
        with pytest.raises(ValueError, match="plain TCP"):
            call()


# --- faults: unreachable, killed, frozen --------------------------------------
@pytest.mark.timeout(120)
def test_wire_to_a_closed_port_fails_clearly() -> None:
    """Nothing listening: WireError naming the address (a hang hits the timeout)."""
    with Server() as srv:
        host, port = srv.host, srv.port
    with pytest.raises(WireError, match=f"{host}:{port}") as info:
        Wire(host, port, timeout=2)
    assert info.value.address == f"{host}:{port}"


@pytest.mark.timeout(120)
def test_wire_when_the_server_is_killed() -> None:
    """SIGKILL of the server: the next send fails with WireError, at once."""
    with Server() as srv:
        w = Wire.to(srv.client(), timeout=3)
        try:
            assert w.send(resp("PING")).replies == ["PONG"]
            srv.kill()
            with pytest.raises(WireError):
                w.send(resp("PING"))
        finally:
            w.close()


@pytest.mark.timeout(120)
def test_wire_when_the_server_is_frozen() -> None:
    """SIGSTOP: a send fails by the wire's timeout, not a hang; SIGCONT recovers."""
    with Server() as srv:
        assert srv.pid is not None
        w = Wire.to(srv.client(), timeout=1)
        try:
            os.kill(srv.pid, signal.SIGSTOP)
            try:
                with pytest.raises(WireError, match="within 1 s"):
                    w.send(resp("PING"))
            finally:
                os.kill(srv.pid, signal.SIGCONT)
            # Closed: the late PONG must not pass for the next command's reply.
            with pytest.raises(WireError, match="closed"):
                w.send(resp("PING"))
            with Wire.to(srv.client(), timeout=3) as fresh:
                assert fresh.send(resp("PING")).replies == ["PONG"]
        finally:
            w.close()


def test_in_threads_reports_a_dead_server_and_leaves_no_thread() -> None:
    """A worker's exception (server killed mid-race) reaches the caller."""
    with Server() as srv:
        clients = [srv.client(retry=no_retry(), socket_timeout=2) for _ in range(2)]
        srv.kill()
        with pytest.raises(redis.ConnectionError):
            in_threads(lambda c: c.incr("n"), clients, times=10, timeout=10)
        for c in clients:
            c.close()


@pytest.mark.timeout(120)
def test_median_ping_through_a_black_hole_times_out(r: redis.Redis) -> None:
    """A cut link makes median_ping_ms fail by the client's socket timeout."""
    with proxy_for(r) as px:
        client = client_via(r, px, socket_timeout=0.5, retry=no_retry())
        try:
            client.ping()
            px.blackhole()
            with pytest.raises(redis.TimeoutError):
                median_ping_ms(client, n=3)
        finally:
            client.close()


# --- proxy helpers, curves, races, server time, sampling ----------------------
def test_client_via_goes_through_the_proxy(r: redis.Redis) -> None:
    """Same database and password, through the proxy's port; close() closes it."""
    with proxy_for(r) as px:
        assert isinstance(px, Proxy) and px.running
        via = client_via(r, px)
        via.set("via", "proxy")
        assert r.get("via") == "proxy"
        assert via.connection_pool.connection_kwargs["port"] == px.port
        assert px.stats.bytes_up > 0 and median_ping_ms(via, n=3) > 0
        assert px.stats.open_connections == 1
        via.close()
        assert wait_until(lambda: px.stats.open_connections == 0, 3)


def test_pipeline_curves_times_every_point(r: redis.Redis) -> None:
    """Every client and batch size gets rounds * calls timed calls (+1 warm-up)."""
    made: list[tuple[str, int]] = []

    def run(client: str, batch: int) -> None:
        made.append((client, batch))

    curves = pipeline_curves(
        run, {"a": "A", "b": "B"}, [1, 10], rounds=2, calls=3, progress=list
    )
    assert set(curves) == {"a", "b"} and all(set(c) == {1, 10} for c in curves.values())
    assert all(v >= 0 for c in curves.values() for v in c.values())
    assert made.count(("A", 10)) == 6 and made.count(("A", 1)) == 7  # 1 warm-up
    assert made[2:5] == [("A", 1)] * 3 and made[5] == ("B", 1)  # clients take turns


def test_in_threads_races_for_real(r: redis.Redis, redis_url: str) -> None:
    """Two clients doing GET then SET lose updates; INCR never does."""
    import labkit

    a, b = r, labkit.connect(redis_url)
    try:
        r.set("n", 0)
        in_threads(lambda c: c.set("n", int(as_str(c.get("n"))) + 1), [a, b], times=200)
        assert int(as_str(r.get("n"))) <= 400
        r.set("n", 0)
        out = in_threads(lambda c: c.incr("n"), [a, b], times=200)
        assert int(as_str(r.get("n"))) == 400 and [len(x) for x in out] == [200, 200]
    finally:
        b.close()


def test_in_threads_timeout_stops_the_threads(r: redis.Redis) -> None:
    """Work that outlasts the timeout: TimeoutError, and the threads stop."""
    with pytest.raises(TimeoutError, match=r"timeout=0\.3"):
        in_threads(lambda c: time.sleep(0.05), [r, r], times=1000, timeout=0.3)


def test_server_usec_per_call_reads_commandstats(r: redis.Redis) -> None:
    """The server's own time per GET: positive and small next to a round trip."""
    r.set("k", "v")
    usec = server_usec_per_call(r, "get", lambda: r.get("k"), calls=5, batches=3)
    assert usec >= 0


def test_sample_records_values_over_time() -> None:
    """sample() calls fn every `every` seconds until `seconds` have passed."""
    counter = iter(range(1000))
    times, values = sample(lambda: next(counter), seconds=0.2, every=0.05)
    assert times == sorted(times) and times[0] < 0.05
    assert times[-1] >= 0.2 and values == list(range(len(values)))
    assert 2 <= len(values) <= 10


# --- plots --------------------------------------------------------------------
def test_plots_draw_measured_data() -> None:
    """Each plot returns a figure for good data and refuses empty data."""
    import matplotlib.pyplot as plt

    figs = [
        plot_pipeline_curves({"loopback": {1: 1e-4, 10: 2e-5, 100: 1e-5}}),
        expiry_timeline({"1%": ([-0.3, 0.0, 0.5], [100, 100, 90], 100)}),
        time_per_command({"encode": 4.0, "parse": 6.0}, whole=11.0, title="GET"),
        hash_growth(
            {1: ("listpack", 64), 2: ("listpack", 80), 3: ("hashtable", 200)}, limit=2
        ),
        batch_bars(
            {"one by one": 0.1, "pipeline": 0.01}, {"one by one": 100, "pipeline": 1}
        ),
    ]
    for fig in figs:
        assert fig.axes
        plt.close(fig)
    bad: list[Callable[[], object]] = [
        lambda: plot_pipeline_curves({}),
        lambda: plot_pipeline_curves({"x": {10: 1.0}}),
        lambda: expiry_timeline({}),
        lambda: expiry_timeline({"x": ([0.0], [0], 0)}),
        lambda: hash_growth({}, limit=1),
        lambda: batch_bars({"a": 1.0}, {"b": 1}),
        lambda: time_per_command({}),
    ]
    for call in bad:
        with pytest.raises(ValueError):
            call()
