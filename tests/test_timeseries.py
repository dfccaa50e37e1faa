"""labkit.timeseries: timestamps converted, retention and forecast exact, health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis

from labkit.server import Server, no_retry
from labkit.timeseries import SeriesStore

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


def test_bad_values_and_settings_are_refused(r: redis.Redis) -> None:
    """Non-numeric values and nonsense bounds raise ValueError/TypeError."""
    store = SeriesStore(r)
    with pytest.raises(TypeError, match="value='12'"):
        store.add("s", T0, "12")
    with pytest.raises(ValueError, match="value=inf"):
        store.add("s", T0, float("inf"))
    with pytest.raises(ValueError, match="max_points=0"):
        SeriesStore(r, max_points=0)
    with pytest.raises(ValueError, match="max_age=-1"):
        SeriesStore(r, max_age=-1)
    with pytest.raises(ValueError, match="series=''"):
        store.add("", T0, 1.0)


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
