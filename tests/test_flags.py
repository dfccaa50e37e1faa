"""labkit.flags: local reads, pub/sub invalidation, stable percentage rollout."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import labkit
from labkit.flags import Flag, FlagStore, rollout_bucket
from labkit.lab.measure import wait_until
from labkit.lab.ratelimit.flags import propagation_ms
from labkit.ratelimit import GCRA
from labkit.server import Server, free_port


@pytest.fixture
def other(redis_url: str) -> Iterator[redis.Redis]:
    """A second client, standing for another process."""
    client = labkit.connect(redis_url)
    yield client
    client.close()


def test_set_and_read_locally(r: redis.Redis) -> None:
    """A flag set through a store reads back from the local copy at once."""
    with FlagStore(r) as flags:
        flags.set("beta", on=False)
        flags.set("rate_limit", value=20)
        assert not flags.is_enabled("beta")
        assert flags.value("rate_limit") == 20
        assert flags.get("rate_limit") == Flag("rate_limit", True, 20, 100.0)
        assert flags.is_enabled("missing", default=True)
        assert set(flags.all()) == {"beta", "rate_limit"}
        assert r.hget("labkit:flags:default", "beta") is not None


def test_change_reaches_another_store(r: redis.Redis, other: redis.Redis) -> None:
    """A change made by one store shows up in another's local copy, and deletes too."""
    with FlagStore(r) as a, FlagStore(other) as b:
        a.set("beta", on=True)
        assert wait_until(lambda: b.is_enabled("beta"))
        a.set("beta", on=False)
        assert wait_until(lambda: not b.is_enabled("beta"))
        a.delete("beta")
        assert wait_until(lambda: b.get("beta") is None)


def test_wait_until_and_propagation(r: redis.Redis, other: redis.Redis) -> None:
    """wait_until sees another store's change (False on timeout); probes clean up."""
    with FlagStore(r) as a, FlagStore(other) as b:
        a.set("beta", on=True)
        assert b.wait_until(lambda s: s.is_enabled("beta"))
        assert not b.wait_until(lambda s: s.value("never") == 1, timeout=0.05)
        delays = propagation_ms(a, b, n=5)
        assert len(delays) == 5 and all(d >= 0 for d in delays)
        assert r.hget(a.key, "probe") is None
        with pytest.raises(ValueError, match="timeout=0"):
            b.wait_until(lambda s: True, timeout=0)


def test_existing_flags_are_loaded_at_start(r: redis.Redis, other: redis.Redis) -> None:
    """A store started after the flags were written sees them without waiting."""
    with FlagStore(r) as a:
        a.set("beta", on=True, value={"colour": "green"})
    with FlagStore(other) as b:
        assert b.value("beta") == {"colour": "green"}


def test_on_change_callback(r: redis.Redis, other: redis.Redis) -> None:
    """on_change runs with (name, flag) for changes and (name, None) for deletes."""
    seen: list[tuple[str, Flag | None]] = []
    done = threading.Event()

    def record(name: str, flag: Flag | None) -> None:
        seen.append((name, flag))
        if flag is None:
            done.set()

    with FlagStore(r) as a, FlagStore(other, on_change=record):
        a.set("x", value=1)
        a.delete("x")
        assert done.wait(5)
    assert seen == [("x", Flag("x", True, 1, 100.0)), ("x", None)]


def test_reads_cost_no_round_trip(r: redis.Redis, other: redis.Redis) -> None:
    """A thousand reads send no command to the server."""
    with FlagStore(r) as flags:
        flags.set("beta", on=True, percent=50)
        before = other.info("stats")["total_commands_processed"]
        for i in range(1000):
            flags.is_enabled("beta", actor=f"user:{i}")
            flags.value("beta")
        after = other.info("stats")["total_commands_processed"]
    assert after - before == 1  # the second INFO itself


def test_rollout_bucket_is_stable_across_processes() -> None:
    """The rollout hash is the same in a process with another hash seed."""
    code = (
        "from labkit.flags import rollout_bucket; print(rollout_bucket('f', 'alice'))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(out.stdout) == rollout_bucket("f", "alice")
    assert rollout_bucket("f", "alice") == pytest.approx(46.398066, abs=1e-6)


def test_percentage_rollout(r: redis.Redis) -> None:
    """percent=10 enables ~10% of actors, always the same ones; none without one."""
    with FlagStore(r) as flags:
        flags.set("new_ui", on=True, percent=10)
        actors = [f"user:{i}" for i in range(10_000)]
        enabled = {a for a in actors if flags.is_enabled("new_ui", actor=a)}
        assert 900 <= len(enabled) <= 1100
        assert enabled == {a for a in actors if flags.is_enabled("new_ui", actor=a)}
        assert not flags.is_enabled("new_ui")
        flags.set("new_ui", on=True, percent=20)  # widening keeps the first 10%
        assert enabled <= {a for a in actors if flags.is_enabled("new_ui", actor=a)}


def test_flags_scenario(r: redis.Redis, other: redis.Redis) -> None:
    """The Go flag service: /ping limited by flag rate_limit (20, then 10); /beta."""
    admin = FlagStore(other).start()
    admin.set("rate_limit", value=20)
    admin.set("beta", on=False)
    with FlagStore(r) as flags:
        limiter = GCRA(
            r, limit=20, period=3600, lookup=lambda ip: flags.value("rate_limit")
        )

        def ping(ip: str) -> tuple[int, int]:
            d = limiter.allow(ip)
            return (200 if d.allowed else 429), d.remaining

        def beta() -> int:
            return 200 if flags.is_enabled("beta") else 404

        assert ping("10.0.0.1") == (200, 19)
        assert beta() == 404
        admin.set("rate_limit", value=10)
        admin.set("beta", on=True)
        assert wait_until(lambda: flags.value("rate_limit") == 10 and beta() == 200)
        assert ping("10.0.0.1") == (200, 8)
        assert [ping("10.0.0.1")[0] for _ in range(9)] == [200] * 8 + [429]
    admin.close()


def test_listener_recovers_after_server_restart() -> None:
    """After the server restarts, the store re-subscribes and reloads the flag set."""
    # AOF keeps the write across the restart. It is written without a publish,
    # before the restart, so only the reload that follows the re-subscribe can
    # show it to the store (and there is no race with the reconnect).
    with (
        Server(config={"appendonly": "yes"}) as server,
        FlagStore(server.client()) as flags,
    ):
        writer = server.client()
        writer.hset("labkit:flags:default", "beta", '{"on": true}')
        assert not flags.is_enabled("beta")  # no publish: the store missed it
        writer.close()
        server.restart()
        assert wait_until(lambda: flags.is_enabled("beta"), timeout=15)
        assert flags.running and flags.loads == 2 and flags.stats.reconnects == 1


def test_close_stops_the_listener(r: redis.Redis) -> None:
    """close() ends the thread; calling it twice is harmless."""
    flags = FlagStore(r).start()
    assert flags.running
    flags.close()
    assert not flags.running
    flags.close()
    with pytest.raises(RuntimeError, match="closed"):
        flags.start()


def test_constructor_does_no_io_and_starts_no_thread() -> None:
    """FlagStore() only checks arguments: start() (or with) does the I/O."""
    threads = threading.active_count()
    nobody = redis.Redis(port=free_port())  # nothing listens there
    flags = FlagStore(nobody, "idle", prefix="app:flags")
    assert threading.active_count() == threads and not flags.running
    assert flags.key == "app:flags:idle" and flags.channel == "app:flags:idle:changed"
    assert flags.stats.reconnects == 0 and "not started" in repr(flags)
    with pytest.raises(RuntimeError, match=r"not started: call start\(\)"):
        flags.is_enabled("beta")
    flags.close()  # harmless before start


def test_start_returns_the_store_and_is_idempotent(r: redis.Redis) -> None:
    """start() returns the store; a second start() on a running one does nothing."""
    flags = FlagStore(r, "twice")
    try:
        assert flags.start() is flags and flags.running
        listener = flags._listener
        assert flags.start() is flags and flags._listener is listener
        assert flags.key == "labkit:flags:twice"
    finally:
        flags.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"name": ""}, ValueError, "name=''"),
        ({"name": 3}, TypeError, "name=3"),
        ({"on": "yes"}, TypeError, "on='yes'"),
        ({"percent": 101}, ValueError, "percent=101"),
        ({"percent": -1}, ValueError, "percent=-1"),
        ({"percent": "5"}, TypeError, "percent='5'"),
        ({"value": object()}, TypeError, "must be JSON"),
    ],
)
def test_bad_input(
    r: redis.Redis, kwargs: dict[str, Any], error: type, named: str
) -> None:
    """Bad names, states, percents and values raise, naming the argument."""
    with FlagStore(r) as flags, pytest.raises(error, match=named):
        flags.set(**({"name": "f"} | kwargs))
    with pytest.raises(TypeError, match="client='redis'"):
        FlagStore("redis")  # type: ignore[arg-type]
