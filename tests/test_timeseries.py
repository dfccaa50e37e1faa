"""labkit.timeseries: timestamps converted, retention and forecast exact, health;
bad input refused before any write, faults bounded, keys bounded, a real cluster."""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from checks import assert_refused, audit_keys, pid_of

from labkit.core.scripts import Script
from labkit.errors import WrongTypeError
from labkit.server import Cluster, Server, free_port, no_retry
from labkit.timeseries import SeriesStore, to_epoch

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_tutorial_forecast_10_20_30_gives_40(r: redis.Redis) -> None:
    """Evenly spaced 10, 20, 30 predict 40, one step after the newest point."""
    store = SeriesStore(r)
    for i, v in enumerate([10, 20, 30]):
        store.add("temp", T0 + timedelta(minutes=i), v)
    fc = store.forecast("temp")
    assert fc.value == 40.0 and fc.data_points_used == 3
    assert fc.timestamp == (T0 + timedelta(minutes=3)).timestamp()


@pytest.mark.parametrize(
    ("values", "expected"),
    [([5.0, 5.0, 5.0, 5.0], 5.0), ([3.0, 1.0, -1.0], -3.0), ([1.5, 2.0], 2.5)],
)
def test_forecast_is_exact_on_lines(
    r: redis.Redis, values: list[float], expected: float
) -> None:
    """On points lying on a line the forecast is that line's next value."""
    store = SeriesStore(r)
    for i, v in enumerate(values):
        store.add("s", 1_714_564_800 + 60 * i, v)
    assert store.forecast("s").value == pytest.approx(expected, abs=1e-9)


def test_forecast_uses_only_the_window(r: redis.Redis) -> None:
    """Only the newest `window` points are fitted (the tutorial's last 100)."""
    store = SeriesStore(r, window=3)
    for i, v in enumerate([1000, -50, 1, 2, 3]):
        store.add("s", i, v)
    fc = store.forecast("s")
    assert fc.data_points_used == 3 and fc.value == pytest.approx(4.0)


def test_forecast_of_empty_and_single_point_series(r: redis.Redis) -> None:
    """No points: no value and zero points used; one point: that value."""
    store = SeriesStore(r)
    assert tuple(store.forecast("none")) == (None, None, 0)
    store.add("one", T0, 7)
    assert store.forecast("one").value == 7.0


@pytest.mark.parametrize(
    "stamp",
    [
        T0,
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00+00:00",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T12:00:00",  # no offset: UTC
        datetime(2024, 5, 1, 12, 0),  # naive: UTC
        datetime(2024, 5, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5))),
        T0.timestamp(),
        int(T0.timestamp()),
    ],
)
def test_timestamps_of_every_accepted_form_agree(r: redis.Redis, stamp: object) -> None:
    """Datetimes, ISO strings and epoch numbers all land on the same score."""
    store = SeriesStore(r)
    store.add("s", stamp, 1.0)
    assert r.zrange(store.key("s"), 0, -1, withscores=True)[0][1] == T0.timestamp()


@pytest.mark.parametrize(
    ("stamp", "error"),
    [
        ("yesterday", ValueError),
        ("2024-13-01T00:00:00", ValueError),
        ("", ValueError),
        (float("nan"), ValueError),
        (None, TypeError),
        (True, TypeError),
        ([2024, 5, 1], TypeError),
    ],
)
def test_garbage_timestamps_are_refused(
    r: redis.Redis, stamp: object, error: type
) -> None:
    """A timestamp that is not a date-time raises, naming the argument."""
    with pytest.raises(error, match="timestamp="):
        SeriesStore(r).add("s", stamp, 1.0)
    assert r.dbsize() == 0


def _store(r: redis.Redis, **kwargs: Any) -> Callable[[], Any]:
    return lambda: SeriesStore(r, **kwargs)


def _call(method: str, *args: Any) -> Callable[[redis.Redis], Callable[[], Any]]:
    return lambda r: lambda: getattr(SeriesStore(r), method)(*args)


# (case id, call factory, error, words the message must contain)
BAD_INPUT: list[tuple[str, Callable[[redis.Redis], Callable[[], Any]], type, str]] = [
    ("client str", lambda r: lambda: SeriesStore("redis://x"), TypeError, "client="),  # type: ignore[arg-type]
    ("client None", lambda r: lambda: SeriesStore(None), TypeError, "client=None"),  # type: ignore[arg-type]
    ("prefix empty", lambda r: _store(r, prefix=""), ValueError, "prefix=''"),
    ("prefix int", lambda r: _store(r, prefix=5), TypeError, "prefix=5"),
    ("max_points 0", lambda r: _store(r, max_points=0), ValueError, "max_points=0"),
    ("max_points neg", lambda r: _store(r, max_points=-5), ValueError, "max_points=-5"),
    (
        "max_points None",
        lambda r: _store(r, max_points=None),
        TypeError,
        "max_points=None",
    ),
    (
        "max_points bool",
        lambda r: _store(r, max_points=True),
        TypeError,
        "max_points=True",
    ),
    (
        "max_points huge",
        lambda r: _store(r, max_points=2**40),
        ValueError,
        "max_points=1099511627776",
    ),
    (
        "max_points float",
        lambda r: _store(r, max_points=5.0),
        TypeError,
        "max_points=5.0",
    ),
    ("max_age 0", lambda r: _store(r, max_age=0), ValueError, "max_age=0"),
    ("max_age neg", lambda r: _store(r, max_age=-1), ValueError, "max_age=-1"),
    ("max_age nan", lambda r: _store(r, max_age=math.nan), ValueError, "max_age=nan"),
    ("max_age inf", lambda r: _store(r, max_age=math.inf), ValueError, "max_age=inf"),
    ("max_age str", lambda r: _store(r, max_age="60"), TypeError, "max_age='60'"),
    ("max_age bool", lambda r: _store(r, max_age=True), TypeError, "max_age=True"),
    ("window 0", lambda r: _store(r, window=0), ValueError, "window=0"),
    ("window bool", lambda r: _store(r, window=False), TypeError, "window=False"),
    ("add series empty", _call("add", "", T0, 1.0), ValueError, "series=''"),
    ("add series list", _call("add", ["a"], T0, 1.0), TypeError, "series=['a']"),
    ("add series newline", _call("add", "a\nb", T0, 1.0), ValueError, "series="),
    ("add value str", _call("add", "s", T0, "12"), TypeError, "value='12'"),
    ("add value nan", _call("add", "s", T0, math.nan), ValueError, "value=nan"),
    ("add value inf", _call("add", "s", T0, math.inf), ValueError, "value=inf"),
    ("add value huge", _call("add", "s", T0, 1e300), ValueError, "value=1e+300"),
    ("add value 10**400", _call("add", "s", T0, 10**400), ValueError, "value=1000"),
    ("add ts 10**400", _call("add", "s", 10**400, 1.0), ValueError, "timestamp=1000"),
    (
        "add ts before year 1",
        _call("add", "s", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 1.0),
        ValueError,
        "outside the years 1 to 9999",
    ),
    ("add value bool", _call("add", "s", T0, True), TypeError, "value=True"),
    ("add value None", _call("add", "s", T0, None), TypeError, "value=None"),
    ("add ts inf", _call("add", "s", math.inf, 1.0), ValueError, "timestamp=inf"),
    ("add ts huge", _call("add", "s", 1e20, 1.0), ValueError, "timestamp=1e+20"),
    ("add ts bool", _call("add", "s", False, 1.0), TypeError, "timestamp=False"),
    ("add ts garbage", _call("add", "s", "soon", 1.0), ValueError, "timestamp='soon'"),
    ("recent n 0", _call("recent", "s", 0), ValueError, "n=0"),
    ("recent n bool", _call("recent", "s", True), TypeError, "n=True"),
    ("recent n str", _call("recent", "s", "5"), TypeError, "n='5'"),
    ("recent series None", _call("recent", None), TypeError, "series=None"),
    ("count series empty", _call("count", ""), ValueError, "series=''"),
    ("forecast window 0", _call("forecast", "s", 0), ValueError, "window=0"),
    ("forecast window neg", _call("forecast", "s", -3), ValueError, "window=-3"),
    ("forecast window bool", _call("forecast", "s", True), TypeError, "window=True"),
    ("forecast window nan", _call("forecast", "s", math.nan), TypeError, "window=nan"),
    ("delete series empty", _call("delete", ""), ValueError, "series=''"),
]


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_is_refused_before_anything_is_written(
    r: redis.Redis,
    make: Callable[[redis.Redis], Callable[[], Any]],
    error: type[Exception],
    words: str,
) -> None:
    """Each bad argument raises a clear error naming it; the database is unchanged."""
    r.zadd("labkit:ts:s", {'{"t":1.0,"v":1}': 1.0})  # an existing series to protect
    allowed = {TypeError: "must", ValueError: "must"}[error]
    if words.startswith(("client=", "timestamp='", "timestamp=False")):
        allowed = "expected" if words.startswith("timestamp") else "needs a redis.Redis"
    assert_refused(r, make(r), error, words, allowed)


@pytest.mark.parametrize("method", ["add", "recent", "count", "forecast"])
def test_a_key_of_another_type_is_a_clear_error_and_stays_untouched(
    r: redis.Redis, method: str
) -> None:
    """A series key holding a string raises WrongTypeError naming key and type."""
    r.set("labkit:ts:s", "not a series")
    store = SeriesStore(r)
    args = {"add": ("s", T0, 1.0)}.get(method, ("s",))
    err = assert_refused(
        r,
        lambda: getattr(store, method)(*args),
        WrongTypeError,
        "'labkit:ts:s'",
        "string",
    )
    assert err.key == "labkit:ts:s" and err.found == "string"
    assert r.get("labkit:ts:s") == "not a series"


def test_foreign_members_in_a_sorted_set_are_a_clear_error(r: redis.Redis) -> None:
    """A sorted set written by someone else is named, not a raw JSON error."""
    r.zadd("labkit:ts:s", {"leaderboard-entry": 10})
    err = assert_refused(
        r, lambda: SeriesStore(r).recent("s"), WrongTypeError, "labkit:ts:s"
    )
    assert "not a SeriesStore point" in str(err)


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["not-a-number", '{"t":1,"v":1}', 10, 0], "timestamp"),
        (["1", "", 10, 0], "member"),
        (["1", '{"t":1,"v":1}', "many", 0], "bounds"),
        (["1", '{"t":1,"v":1}', 10, -1], "bounds"),
    ],
)
def test_the_script_checks_its_arguments_before_its_first_write(
    r: redis.Redis, args: list[Any], word: str
) -> None:
    """Called directly with bad ARGV, the Lua script errors and writes nothing."""
    r.zadd("labkit:ts:s", {'{"t":5.0,"v":5}': 5.0})
    err = assert_refused(
        r,
        lambda: Script("timeseries_add")(r, ["labkit:ts:s"], args),
        redis.exceptions.ResponseError,
        "SERIESARG",
        word,
    )
    assert err is not None and r.zcard("labkit:ts:s") == 1


def test_unreachable_server_fails_within_seconds(r: redis.Redis) -> None:
    """A store on a port nobody listens on raises ConnectionError at once."""
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=no_retry())
    store = SeriesStore(dead)
    assert_refused(
        r, lambda: store.add("s", T0, 1.0), redis.exceptions.ConnectionError, "onnect"
    )
    assert not store.health().redis_connected


def test_bounds_and_timestamps_at_the_edges_are_accepted(r: redis.Redis) -> None:
    """The largest allowed value and the first and last datetimes are stored."""
    store = SeriesStore(r, max_points=3)
    assert store.add("edge", datetime(1, 1, 1, tzinfo=UTC), -1e15) == 1
    assert store.add("edge", "9999-12-31T23:59:59Z", 1e15) == 2
    assert to_epoch(datetime(9999, 12, 31, 23, 59, 59)) == 253_402_300_799.0
    assert [p.value for p in store.recent("edge")] == [-1e15, 1e15]


def test_default_store_is_bounded(r: redis.Redis) -> None:
    """With its defaults a store keeps the newest 10,000 points, no more."""
    store = SeriesStore(r)
    assert store.max_points == 10_000 and store.max_age is None
    pipe = r.pipeline(transaction=False)
    for i in range(10_050):
        store.script.queue(
            pipe, [store.key("s")], [i, f'{{"t":{i},"v":{i}}}', 10_000, 0]
        )
    pipe.execute()
    assert store.count("s") == 10_000
    assert store.recent("s", 1)[0].timestamp == 10_049.0
    assert store.add("s", 10_050, 1.0) == 10_000


def test_keys_audit_after_a_normal_run(r: redis.Redis) -> None:
    """Every key a store writes is listed in its Keys: section, with its bound."""
    store = SeriesStore(r, max_points=50, max_age=3600)
    for i in range(80):
        store.add("cpu", T0 + timedelta(seconds=i), float(i))
        store.add("mem", T0 + timedelta(seconds=i), float(2 * i))
    store.forecast("cpu")
    seen = audit_keys(r, SeriesStore)
    assert set(seen) == {"labkit:ts:cpu", "labkit:ts:mem"}
    assert all("no TTL" in d and "max_points" in d for d in seen.values())


def test_retention_by_count_keeps_exactly_the_newest(r: redis.Redis) -> None:
    """With max_points=5, 20 adds leave exactly the 5 newest points."""
    store = SeriesStore(r, max_points=5)
    counts = [store.add("s", i, float(i)) for i in range(20)]
    assert counts == [1, 2, 3, 4, 5] + [5] * 15
    assert [p.value for p in store.recent("s", 100)] == [15, 16, 17, 18, 19]


def test_retention_by_age_is_relative_to_the_newest_point(r: redis.Redis) -> None:
    """With max_age=60, points more than 60 s older than the newest go."""
    store = SeriesStore(r, max_age=60)
    for t in (0, 30, 59, 60, 100, 120):
        store.add("s", 1_714_564_800 + t, float(t))
    assert [p.value for p in store.recent("s")] == [60.0, 100.0, 120.0]


def test_same_timestamp_replaces_the_point(r: redis.Redis) -> None:
    """Two adds at one timestamp leave one point holding the second value."""
    store = SeriesStore(r)
    store.add("s", T0, 1.0)
    assert store.add("s", "2024-05-01T12:00:00Z", 2.0) == 1
    assert store.recent("s") == [(T0.timestamp(), 2.0)]


def test_recent_returns_oldest_first(r: redis.Redis) -> None:
    """recent(n) gives the n newest points in time order, whatever the add order."""
    store = SeriesStore(r)
    for t in (5, 1, 4, 2, 3):
        store.add("s", t, t * 10)
    assert store.recent("s", 3) == [(3.0, 30), (4.0, 40), (5.0, 50)]
    assert store.count("s") == 5 and store.delete("s") and store.count("s") == 0


def test_health_reports_connection_and_persistence() -> None:
    """health() says reachable and whether AOF/RDB is on; a dead server says not."""
    with Server(config={"appendonly": "yes"}) as srv:
        health = SeriesStore(srv.client(retry=no_retry())).health()
        assert health.redis_connected and health.aof_enabled and health.persistent
        srv.kill()
        down = SeriesStore(srv.client(retry=no_retry())).health()
        assert not down.redis_connected and "Connection" in down.error
    with Server() as srv:
        health = SeriesStore(srv.client()).health()
        assert health.redis_connected and not health.persistent
        assert health.save_rule == ""


def test_add_is_refused_over_maxmemory_with_noeviction() -> None:
    """At the memory limit (noeviction) add raises and leaves the series as it was."""
    with Server(config={"maxmemory-policy": "noeviction"}) as srv:
        client = srv.client()
        store = SeriesStore(client, max_points=100)
        store.add("s", 0, 0.0)  # the Lua engine's own memory counts: load it first
        client.config_set("maxmemory", client.info("memory")["used_memory"] + 20_000)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(1, 10_000):
                store.add(f"s{i % 50}", i, float(i))
        kept = store.count("s")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            store.add("s", 10_001, 1.0)
        assert store.count("s") == kept == 1


def _writes_until_error(store: SeriesStore, start: int = 0) -> BaseException:
    for i in range(start, start + 1_000_000):
        try:
            store.add("s", i, float(i))
        except redis.exceptions.RedisError as exc:
            return exc
    raise AssertionError("the writes never failed")


@pytest.mark.timeout(120)
def test_sigkill_during_writes_is_a_clear_error_within_seconds() -> None:
    """SIGKILL of the server mid-stream: the next add raises ConnectionError fast."""
    with Server() as srv:
        store = SeriesStore(srv.client(retry=no_retry(), socket_timeout=2))
        for i in range(100):
            store.add("s", i, float(i))
        srv.kill()
        err = _writes_until_error(store, 100)
        assert isinstance(err, redis.exceptions.ConnectionError)
        assert not srv.running
    assert not srv.running


@pytest.mark.timeout(120)
def test_sigstop_during_writes_times_out_then_recovers() -> None:
    """A frozen server: the add fails by the socket timeout; after SIGCONT it works."""
    with Server() as srv:
        store = SeriesStore(srv.client(retry=no_retry(), socket_timeout=1))
        store.add("s", 0, 0.0)
        os.kill(pid_of(srv), signal.SIGSTOP)
        try:
            err = _writes_until_error(store, 1)
        finally:
            os.kill(pid_of(srv), signal.SIGCONT)
        assert isinstance(err, redis.exceptions.TimeoutError)
        # The add that timed out may have run after SIGCONT; no other is lost.
        assert store.add("s", 2, 2.0) in (2, 3)
        assert store.recent("s", 1_000)[0].value == 0.0


def test_store_works_on_a_real_cluster() -> None:
    """On a 3-primary cluster each series lives on its key's node; all calls work."""
    with Cluster(masters=3) as cluster:
        rc = cluster.client()
        store = SeriesStore(rc, max_points=5)
        for name in ("cpu", "mem", "disk", "net"):
            for i, v in enumerate([10, 20, 30]):
                store.add(name, i, v)
        slots = {rc.keyslot(store.key(n)) for n in ("cpu", "mem", "disk", "net")}
        assert len(slots) > 1  # really spread over slots (and so nodes)
        assert store.forecast("mem").value == 40.0 and store.count("net") == 3
        health = store.health()
        assert health.redis_connected and health.aof_enabled is False
