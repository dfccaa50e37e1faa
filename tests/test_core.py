"""labkit.core, the shared plumbing: argument checks, scripts, clients, the listener."""

from __future__ import annotations

import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import labkit
from labkit.core.args import (
    check_choice,
    check_count,
    check_key,
    check_name,
    check_names,
    check_number,
    check_seconds,
    check_tag,
)
from labkit.core.clients import check_client, server_version, supports
from labkit.core.listen import Listener
from labkit.core.scripts import Script, run_batch
from labkit.core.wait import wait_until
from labkit.errors import ListenerError, MalformedMessageError
from labkit.server import Cluster, Server, no_retry

# --- argument checks ---------------------------------------------------------

BAD_ARGS: list[tuple[Any, type[Exception], str]] = [
    (lambda: check_count("limit", 0), ValueError, r"limit=0: must be an int from 1"),
    (lambda: check_count("limit", True), TypeError, r"limit=True"),
    (lambda: check_count("limit", 2**63), ValueError, r"limit=9223372036854775808"),
    (lambda: check_count("limit", 3.0), TypeError, r"limit=3.0"),
    (lambda: check_number("x", math.nan, min=0, max=1), ValueError, r"x=nan"),
    (lambda: check_number("x", math.inf, min=0, max=1), ValueError, r"x=inf"),
    (lambda: check_number("x", "1", min=0, max=1), TypeError, r"x='1'"),
    (lambda: check_number("x", False, min=0, max=1), TypeError, r"x=False"),
    (lambda: check_seconds("ttl", 0), ValueError, r"ttl=0: .*> 0"),
    (lambda: check_seconds("ttl", 10**400), ValueError, r"ttl=100000\.\.\.\(401"),
    (lambda: check_count("n", -(10**400)), ValueError, r"n=-100000\.\.\.\(401"),
    (lambda: check_seconds("ttl", -1), ValueError, r"ttl=-1"),
    (lambda: check_seconds("ttl", 1e300), ValueError, r"ttl=1e\+300"),
    (lambda: check_name("name", ""), ValueError, r"name='': must be a non-empty str"),
    (lambda: check_name("name", "a\nb"), ValueError, r"line breaks"),
    (lambda: check_name("name", 5), TypeError, r"name=5"),
    (lambda: check_key("key", ""), ValueError, r"key=''"),
    (lambda: check_key("key", None), TypeError, r"key=None"),
    (lambda: check_key("key", True), TypeError, r"key=True"),
    (lambda: check_tag("user", "}x"), ValueError, r"user='}x'.*hash tag"),
    (lambda: check_tag("user", ""), ValueError, r"user=''"),
    (lambda: check_names("channels", "abc"), TypeError, r"a bare str is one name"),
    (lambda: check_names("channels", [""]), ValueError, r"channels item=''"),
    (lambda: check_names("channels", []), ValueError, r"at least 1"),
    (lambda: check_choice("mode", "x", ["a", "b"]), ValueError, r"mode='x'.*'a'"),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_ARGS)
def test_bad_arguments_are_named(call: Any, error: type[Exception], match: str) -> None:
    """Each check names the argument and the value, and says what is allowed."""
    with pytest.raises(error, match=match):
        call()


def test_good_arguments_pass_through() -> None:
    """Valid values come back (converted where that is the point)."""
    assert check_count("n", 5) == 5
    assert check_seconds("t", 2) == 2.0 and isinstance(check_seconds("t", 2), float)
    assert check_key("k", 7) == "7"
    assert check_names("c", ("a", "b")) == ["a", "b"]
    assert check_tag("user", "42") == "42"


def test_wait_until_refuses_unbounded_waits() -> None:
    """A NaN or infinite timeout is refused instead of waiting forever."""
    for bad in (math.nan, math.inf, -1, 0):
        with pytest.raises(ValueError, match="timeout"):
            wait_until(lambda: False, timeout=bad)
    assert wait_until(lambda: True, timeout=0.01)
    assert not wait_until(lambda: False, timeout=0.05)


# --- scripts -----------------------------------------------------------------


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_script_is_one_round_trip_and_survives_script_flush(r: redis.Redis) -> None:
    """EVALSHA first; after SCRIPT FLUSH the NOSCRIPT is handled once."""
    script = Script("queues_promote")
    assert "KEYS[1]" in script.source and len(script.sha) == 40
    r.script_load(script.source)
    r.config_resetstat()
    assert script(r, ["lab:t:delayed", "lab:t:ready"], [100]) == [0, -1]
    assert _calls(r, "evalsha") == 1 and _calls(r, "script|load") == 0
    r.script_flush()
    script(r, ["lab:t:delayed", "lab:t:ready"], [100])
    assert _calls(r, "script|load") == 1


def test_run_batch_sends_no_script_exists(r: redis.Redis) -> None:
    """A batch is one pipeline of EVALSHA (no SCRIPT EXISTS), NOSCRIPT retried once."""
    script = Script("queues_promote")
    r.script_flush()
    r.config_resetstat()
    calls = [(script, [f"lab:b{i}:delayed", f"lab:b{i}:ready"], [10]) for i in range(5)]
    assert run_batch(r, calls) == [[0, -1]] * 5
    assert _calls(r, "script|exists") == 0 and _calls(r, "script|load") == 1
    assert run_batch(r, calls) == [[0, -1]] * 5
    assert _calls(r, "evalsha") == 15  # 5 refused (NOSCRIPT), 5 run, 5 more
    assert _calls(r, "script|load") == 1


def test_script_and_batch_on_a_cluster() -> None:
    """Scripts route by key on a RedisCluster, singly and in a cluster pipeline."""
    with Cluster(masters=3) as cluster:
        rc = cluster.client()
        script = Script("queues_promote")
        keys = [f"lab:{{q{i}}}:delayed" for i in range(6)]
        assert len({rc.keyslot(k) for k in keys}) > 1
        for key in keys:
            assert script(rc, [key, key.replace("delayed", "ready")], [10]) == [0, -1]
        batch = [(script, [k, k.replace("delayed", "ready")], [10]) for k in keys]
        assert run_batch(rc, batch) == [[0, -1]] * 6
        rc.close()


# --- clients -----------------------------------------------------------------


def test_client_checks_say_what_they_need(r: redis.Redis, redis_url: str) -> None:
    """Wrong client types, clusters and byte replies are refused by name."""
    with pytest.raises(TypeError, match=r"JobQueue needs a redis\.Redis"):
        check_client("redis://x", owner="JobQueue")
    raw = labkit.connect(redis_url, decode_responses=False)
    with pytest.raises(TypeError, match="decode_responses=True") as info:
        check_client(raw, owner="JobQueue", decode=True)
    # The client is named in a line, by address and db (not its whole pool repr).
    assert re.match(
        r"client=<Redis \S+ db=\d+ decode_responses=False>: ", str(info.value)
    )
    assert "ConnectionPool" not in str(info.value) and len(str(info.value)) < 200
    assert check_client(r, owner="JobQueue", decode=True) is r
    raw.close()


def test_cluster_refusal_gives_the_reason() -> None:
    """A pattern that cannot run on a cluster says why."""
    with Cluster(masters=3) as cluster:
        rc = cluster.client()
        with pytest.raises(
            TypeError, match=r"FlagStore does not work .*: one hash"
        ) as info:
            check_client(rc, owner="FlagStore", cluster="one hash")
        assert str(info.value).startswith("client=<RedisCluster 127.0.0.1:")
        rc.close()


def test_server_version_and_features(r: redis.Redis) -> None:
    """The version is read once per client; features follow the table."""
    found = server_version(r)
    assert found.name in ("valkey", "redis") and found.version >= (7, 0, 0)
    assert server_version(r) is found
    assert isinstance(supports(r, "hash-field-ttl"), bool)
    with pytest.raises(ValueError, match="feature='nope'"):
        supports(r, "nope")


# --- the listener --------------------------------------------------------------


@pytest.fixture
def threads() -> Iterator[None]:
    """Fail if a test leaves a thread behind."""
    before = set(threading.enumerate())
    yield
    assert wait_until(lambda: set(threading.enumerate()) <= before, timeout=5)


def test_listener_survives_callback_errors_and_bad_messages(
    r: redis.Redis, threads: None
) -> None:
    """A raising callback and an unparsable message are counted; the loop goes on."""
    got: list[str] = []

    def on_message(msg: dict[str, Any]) -> None:
        data = msg["data"]
        if data == "boom":
            raise RuntimeError("callback failed")
        if not data.isdigit():
            raise MalformedMessageError("not a number", channel="c", data=data)
        got.append(data)

    listener = Listener(r, ["c"], on_message=on_message).start()
    try:
        for data in ("1", "boom", "junk", "2"):
            r.publish("c", data)
        assert wait_until(lambda: len(got) == 2)
        assert listener.running
    finally:
        listener.stop()
    assert got == ["1", "2"]
    assert listener.stats.callback_errors == 1 and listener.stats.bad_messages == 1
    assert isinstance(listener.stats.last_error, MalformedMessageError)


def test_listener_resubscribes_and_reloads_after_client_kill(
    r: redis.Redis, threads: None
) -> None:
    """CLIENT KILL: the listener comes back, and on_subscribe runs again."""
    subscribed: list[str] = []
    got: list[str] = []
    listener = Listener(
        r,
        ["c"],
        on_message=lambda m: got.append(m["data"]),
        on_subscribe=subscribed.append,
        health_check_interval=0.1,
    ).start()
    try:
        assert subscribed == ["c"]
        [victim] = [c["id"] for c in r.client_list() if "P" in c["flags"]]
        r.client_kill_filter(_id=victim)
        assert wait_until(lambda: subscribed == ["c", "c"])
        r.publish("c", "after")
        assert wait_until(lambda: got == ["after"])
    finally:
        listener.stop()
    assert listener.stats.reconnects == 1 and listener.stats.confirmations == 2


def test_listener_watchdog_finds_a_frozen_server(threads: None) -> None:
    """SIGSTOP: the watchdog declares the connection dead; SIGCONT: it recovers."""
    with Server() as server:
        client = server.client(retry=no_retry(), socket_timeout=1)
        got: list[str] = []
        listener = Listener(
            client,
            ["c"],
            on_message=lambda m: got.append(m["data"]),
            health_check_interval=0.1,
            dead_after=0.3,
        ).start()
        try:
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            try:
                assert wait_until(lambda: listener.stats.unresponsive >= 1, timeout=3)
                assert not listener.connected
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert wait_until(lambda: client.pubsub_numsub("c") == [("c", 1)])
            client.publish("c", "back")
            assert wait_until(lambda: got == ["back"], timeout=5)
            assert listener.connected and listener.stats.downtime > 0
        finally:
            listener.stop()
            client.close()


def _stopped(pid: int) -> bool:
    """True once process ``pid`` is stopped (SIGSTOP taken effect; Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "T"


def test_listener_stall_after_its_ping_is_not_a_dead_connection(
    threads: None,
) -> None:
    """The listener's thread stalls for longer than dead_after between its
    PING and reading the PONG (a GC pause, a descheduled process): the PONG
    waiting on the socket proves the connection alive, so no reconnect. A
    frozen server sends nothing: that connection is still declared dead.

    The test plays the listener's thread, step by step (no thread started):
    ``_watchdog()`` sends the PING, the sleep is the stall, and
    ``_read_one()`` is the loop's next step (watchdog check, then read).
    """
    with Server() as server:
        assert server.pid is not None
        client = server.client(retry=no_retry(), socket_timeout=1)
        listener = Listener(
            client,
            ["c"],
            on_message=print,
            health_check_interval=0.01,
            dead_after=0.05,
        )
        listener.connect()
        try:
            conn = listener._pubsub.connection
            time.sleep(0.02)  # the next PING is due
            listener._watchdog()  # sends it
            assert listener._ping_sent is not None
            time.sleep(0.2)  # the stall: 4 x dead_after
            assert wait_until(lambda: conn.can_read(timeout=0), timeout=10)  # PONG
            listener._read_one(0.1)
            assert listener._ping_sent is None  # the PONG was read
            assert listener.stats.unresponsive == 0 and listener.connected
            assert listener.stats.reconnects == 0

            os.kill(server.pid, signal.SIGSTOP)
            try:
                assert wait_until(lambda: _stopped(server.pid), timeout=10)
                time.sleep(0.02)
                listener._watchdog()  # a PING the frozen server never answers
                assert listener._ping_sent is not None
                time.sleep(0.2)
                listener._read_one(0.1)
                assert listener.stats.unresponsive == 1 and not listener.connected
            finally:
                os.kill(server.pid, signal.SIGCONT)
            listener.start()  # the thread reconnects and resubscribes
            assert wait_until(lambda: listener.connected, timeout=10)
            assert wait_until(lambda: client.pubsub_numsub("c") == [("c", 1)])
            assert listener.stats.reconnects == 1
        finally:
            listener.stop()
            client.close()


def test_pump_reads_everything_published_before(r: redis.Redis, threads: None) -> None:
    """An on-demand listener handles exactly what was published before pump()."""
    got: list[str] = []
    listener = Listener(r, ["c"], on_message=lambda m: got.append(m["data"]))
    listener.connect()
    try:
        for i in range(3):
            r.publish("c", str(i))
        assert listener.pump() == 3 and got == ["0", "1", "2"]
        assert listener.pump() == 0
    finally:
        listener.stop()
    with pytest.raises(ListenerError, match="before connect"):
        listener.pump()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"channels": "abc"}, TypeError, "a bare str is one name"),
        ({"channels": []}, ValueError, "subscribe to something"),
        ({"channels": ["a"], "health_check_interval": math.nan}, ValueError, "nan"),
        ({"channels": ["a"], "dead_after": 0}, ValueError, "dead_after=0"),
        ({"channels": ["a"], "on_message": 5}, TypeError, "on_message=5"),
        ({"channels": ["a"], "sharded": 1}, TypeError, "sharded=1"),
    ],
)
def test_listener_bad_arguments(
    r: redis.Redis, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad listener arguments are refused before anything is subscribed."""
    kwargs.setdefault("on_message", print)
    with pytest.raises(error, match=match):
        Listener(r, **kwargs)


def test_every_script_declares_its_flags() -> None:
    """Each script starts with a ``#!lua`` shebang, then a comment header."""
    from importlib import resources

    for package in ("labkit", "labkit.lab"):
        folder = resources.files(package).joinpath("lua")
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua"))
        assert names
        for name in names:
            first, second = folder.joinpath(name).read_text().splitlines()[:2]
            assert first.startswith("#!lua"), f"{name}: first line {first!r}"
            assert second.startswith("--"), f"{name}: no header comment"


def test_library_scripts_serve_the_library_and_lab_scripts_load() -> None:
    """labkit/lua holds the library's scripts; the lab's load from labkit/lab/lua."""
    from importlib import resources

    from labkit.core.scripts import Script

    lab = resources.files("labkit.lab").joinpath("lua")
    lab_names = {p.name.removesuffix(".lua") for p in lab.iterdir()}
    assert "games_move" in lab_names
    assert not resources.files("labkit").joinpath("lua", "games_move.lua").is_file()
    script = Script("games_move", package="labkit.lab")
    assert script.source.startswith("#!lua") and len(script.sha) == 40
    assert "package='labkit.lab'" in repr(script)


def test_a_renamed_keyword_warns_at_the_caller() -> None:
    """renamed(): the old name works with a DeprecationWarning naming the new one."""
    import warnings

    from labkit.core.args import renamed

    def make(new: int | None = None, old: int | None = None) -> int | None:
        return renamed("Thing", "old", old, "new", new)

    assert make(new=1) == 1 and make() is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert make(old=2) == 2
    [w] = caught
    assert w.category is DeprecationWarning and w.filename == __file__
    assert "Thing(old=...) is deprecated; use new=..." in str(w.message)
    with pytest.raises(TypeError, match="pass new= only"):
        make(new=1, old=2)
