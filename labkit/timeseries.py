"""Library: model state as time series: a bounded sorted set per series, a forecast.

A model keeps each series in a sorted set scored by timestamp and predicts the
next value from the last 100 points (the Flask time-series tutorial). Done
right, that means: timestamps converted to numbers (a sorted-set score must be
one), one point per timestamp, retention so history cannot grow without bound
(every store has a count bound, 10,000 points by default), and a health check
that says whether the data would survive a restart.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis

from labkit.core.args import YEAR, check_count, check_int, check_name, check_number
from labkit.core.clients import check_client
from labkit.core.keys import key_part
from labkit.core.scripts import Script
from labkit.errors import WrongTypeError

__all__ = ["Forecast", "Health", "Point", "SeriesStore", "to_epoch"]


class Point(NamedTuple):
    """One observation.

    Attributes:
        timestamp: Epoch seconds (UTC), as stored in the score.
        value: The observed value.
    """

    timestamp: float
    value: float


class Forecast(NamedTuple):
    """A one-step-ahead prediction.

    Attributes:
        value: Predicted value at ``timestamp``; None when the series is empty.
        timestamp: Where the prediction is for: the newest point plus the mean
            spacing of the points used (None when fewer than two points).
        data_points_used: How many stored points the fit used (0 after a
            restart that lost the state).
    """

    value: float | None
    timestamp: float | None
    data_points_used: int


class Health(NamedTuple):
    """What ``/health`` should report.

    Attributes:
        redis_connected: The server answered PING.
        aof_enabled: ``appendonly`` is on (None if unknown).
        save_rule: The RDB ``save`` rule, "" when snapshots are off (None if
            the server refuses ``CONFIG GET``, as some managed services do).
        error: Why the server could not be reached, else "".
    """

    redis_connected: bool
    aof_enabled: bool | None
    save_rule: str | None
    error: str = ""

    @property
    def persistent(self) -> bool:
        """True if a restart would bring the data back (AOF or RDB is on)."""
        return bool(self.aof_enabled) or bool(self.save_rule)


#: Epoch seconds of 0001-01-01 and 9999-12-31T23:59:59 (UTC): the range of
#: ``datetime``, and so of the timestamps a store accepts.
MIN_EPOCH, MAX_EPOCH = -62_135_596_800.0, 253_402_300_799.0
#: Largest magnitude of a stored value. Far beyond any model's reading, and far
#: below where the forecast's sums of products would overflow a double.
MAX_VALUE = 1e15
#: Default and largest count bound per series (``max_points``).
DEFAULT_MAX_POINTS, MAX_POINTS = 10_000, 10_000_000
#: Largest ``max_age``: a century of data time.
MAX_AGE = 100 * YEAR


def to_epoch(timestamp: Any) -> float:
    """Convert a datetime, an ISO 8601 string or epoch seconds to epoch seconds.

    Naive datetimes and ISO strings without an offset are taken as UTC.

    Raises:
        ValueError: The string is not ISO 8601, or the number is not finite
            or outside the years 1 to 9999.
        TypeError: Any other type (bools included).
    """
    if isinstance(timestamp, datetime):
        moment = timestamp
    elif isinstance(timestamp, str):
        try:
            moment = datetime.fromisoformat(timestamp.strip())
        except ValueError:
            raise ValueError(
                f"timestamp={timestamp!r} is not an ISO 8601 date-time; expected "
                "e.g. '2024-05-01T12:00:00Z', a datetime or epoch seconds"
            ) from None
    elif isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        return check_number(
            "timestamp",
            timestamp,
            min=MIN_EPOCH,
            max=MAX_EPOCH,
            unit="of epoch seconds (years 1 to 9999)",
        )
    else:
        raise TypeError(
            f"timestamp={timestamp!r} ({type(timestamp).__name__}): expected a "
            "datetime, an ISO 8601 string or epoch seconds (int or float)"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        seconds = moment.timestamp()
    except (OverflowError, ValueError):  # 9999-12-31 with a negative offset
        seconds = math.nan
    # 0001-01-01T00:00+01:00 is 0000-12-31 in UTC: timestamp() answers a number
    # before year 1 instead of failing, so the range is checked here.
    if not MIN_EPOCH <= seconds <= MAX_EPOCH:
        raise ValueError(
            f"timestamp={timestamp!r}: outside the years 1 to 9999 in UTC; must "
            "be from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
        )
    return seconds


def _check_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"value={value!r} ({type(value).__name__}): must be a finite number "
            f"from {-MAX_VALUE:g} to {MAX_VALUE:g} (an int or float)"
        )
    check_number("value", value, min=-MAX_VALUE, max=MAX_VALUE)
    return value


class SeriesStore:
    """Time series of numbers, one bounded sorted set per series.

    Args:
        client: A ``redis.Redis`` or ``redis.RedisCluster``
            (``decode_responses`` either way). Each call touches one key, so a
            cluster routes it by the series' key.
        prefix: Key namespace (a non-empty name; default ``labkit:ts``).
        max_points: Keep at most this many newest points per series (default
            10,000; at most 10,000,000). There is no unbounded setting: a
            series that nobody trims grows until the server runs out of memory.
        max_age: Also keep only points at most this many seconds older than
            the newest point of the series (None: no age bound). Age is
            measured in data time, not wall time, so back-filled history is
            trimmed the same way.
        window: How many newest points :meth:`forecast` fits (the tutorial's
            100; at most 10,000,000). A series holds at most ``max_points``,
            so a larger window fits all of them.

    Keys:
        ``<prefix>:<series>`` (sorted set): score = epoch seconds (UTC), member =
        the point as JSON with fields t (timestamp) and v (value), one point
        per timestamp (an add at an existing timestamp replaces the point);
        no TTL (model state must not vanish on a timer): bounded instead by
        max_points (default 10,000 points) and, if set, max_age.

    Retention is applied by the same Lua script that adds the point, so a
    series never holds more than its bounds, even for a moment. The script
    checks its arguments and the key's type before its first write: a refused
    add leaves the series as it was.
    """

    script = Script("timeseries_add")

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        prefix: str = "labkit:ts",
        max_points: int = DEFAULT_MAX_POINTS,
        max_age: float | None = None,
        window: int = 100,
    ) -> None:
        self.client = check_client(client, owner="SeriesStore", cluster=True)
        self.prefix = check_name("prefix", prefix, max_len=200)
        self.max_points = check_count("max_points", max_points, max=MAX_POINTS)
        self.max_age = (
            None
            if max_age is None
            else check_number(
                "max_age", max_age, min=0, max=MAX_AGE, min_open=True,
                unit="of seconds (or None)",
            )
        )  # fmt: skip
        self.window = check_count("window", window, max=MAX_POINTS)

    def __repr__(self) -> str:
        age = f", max_age={self.max_age:g}" if self.max_age else ""
        return (
            f"SeriesStore(prefix={self.prefix!r}, max_points={self.max_points}"
            f"{age}, window={self.window})"
        )

    def key(self, series: str) -> str:
        """The sorted-set key holding ``series``."""
        return f"{self.prefix}:{key_part(check_name('series', series))}"

    def add(self, series: str, timestamp: Any, value: float) -> int:
        """Store ``value`` at ``timestamp`` and apply retention.

        Args:
            series: Series name, e.g. ``"temperature"``.
            timestamp: A datetime, an ISO 8601 string or epoch seconds.
            value: The observation (int or float, finite, at most 1e15 in
                magnitude).

        Returns:
            Number of points in the series afterwards.

        Raises:
            ValueError: Unparseable timestamp, or a number out of range.
            TypeError: A timestamp or value of the wrong type.
            WrongTypeError: The key holds another Redis type, or a sorted set
                whose members are not this store's points (nothing written).
        """
        key = self.key(series)
        ts = to_epoch(timestamp)
        member = json.dumps({"t": ts, "v": _check_value(value)}, separators=(",", ":"))
        args: list[str | int | float] = [
            repr(ts),
            member,
            self.max_points,
            self.max_age or 0,
        ]
        try:
            return int(self.script(self.client, [key], args))
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith("SERIESTYPE"):
                raise self._wrong_type(key, str(exc).split()[-1]) from exc
            if str(exc).startswith("SERIESMEMBER"):
                member = str(exc).split(" ", 1)[1]
                raise WrongTypeError(
                    f"key {key!r} holds a sorted set whose member {member} is not a "
                    'SeriesStore point ({"t": <epoch s>, "v": <number>}); nothing '
                    "was written. Pick another prefix or series name, or delete "
                    "the key",
                    key=key,
                    found="zset of foreign members",
                    expected="zset of SeriesStore points",
                ) from exc
            raise

    def _wrong_type(self, key: str, found: str) -> WrongTypeError:
        return WrongTypeError(
            f"key {key!r} holds a {found}, not a series (a sorted set written by "
            "SeriesStore); pick another prefix or series name, or delete the key",
            key=key,
            found=found,
            expected="zset",
        )

    def _read(self, key: str, call: Any) -> Any:
        try:
            return call()
        except redis.exceptions.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            found = self.client.type(key)
            found = found.decode() if isinstance(found, bytes) else str(found)
            raise self._wrong_type(key, found) from exc

    def recent(self, series: str, n: int = 100) -> list[Point]:
        """The ``n`` newest points, oldest first (``n`` from 1 to 10,000,000).

        Raises:
            WrongTypeError: The key holds another type, or members that are
                not this store's points.
        """
        key = self.key(series)
        check_count("n", n, max=MAX_POINTS)
        raw = self._read(key, lambda: self.client.zrange(key, -n, -1))
        points = []
        for member in raw:
            try:
                data = json.loads(member)
                points.append(Point(float(data["t"]), data["v"]))
            except (ValueError, TypeError, KeyError) as exc:
                raise WrongTypeError(
                    f"key {key!r} holds a sorted set whose member {member!r} is "
                    "not a SeriesStore point (JSON with t and v)",
                    key=key,
                    found="zset of foreign members",
                    expected="zset of SeriesStore points",
                ) from exc
        return points

    def count(self, series: str) -> int:
        """Number of points stored for ``series``."""
        key = self.key(series)
        return int(self._read(key, lambda: self.client.zcard(key)))

    def delete(self, series: str) -> bool:
        """Drop the whole series; True if it existed."""
        return bool(self.client.delete(self.key(series)))

    def forecast(self, series: str, window: int | None = None) -> Forecast:
        """Predict the next value by a least-squares line over the newest points.

        The line is fitted to value against time over the last ``window``
        points (None: the store's ``window``; else an int from 1 to
        10,000,000) and read off one mean spacing after the newest point,
        so evenly spaced 10, 20, 30 predict 40. Times are centred before
        fitting: epoch seconds (~1.7e9) squared would lose the precision that
        the differences need.
        """
        n = self.window if window is None else window
        check_int("window", n, min=1, max=MAX_POINTS, what="None or an int")
        points = self.recent(series, n)
        if not points:
            return Forecast(None, None, 0)
        if len(points) == 1:
            return Forecast(float(points[0].value), None, 1)
        ts = [p.timestamp for p in points]
        vs = [float(p.value) for p in points]
        t_mean = math.fsum(ts) / len(ts)
        v_mean = math.fsum(vs) / len(vs)
        dt = [t - t_mean for t in ts]
        sxx = math.fsum(d * d for d in dt)
        sxy = math.fsum(d * (v - v_mean) for d, v in zip(dt, vs, strict=True))
        slope = sxy / sxx if sxx else 0.0
        step = (ts[-1] - ts[0]) / (len(ts) - 1)
        at = ts[-1] + step
        return Forecast(v_mean + slope * (at - t_mean), at, len(points))

    def health(self) -> Health:
        """Is the server reachable, and would its data survive a restart?

        On a cluster, ``aof_enabled`` is true only if every primary has AOF
        on, and ``save_rule`` is one node's rule.
        """
        try:
            self.client.ping()
            info = self._persistence_info()
        except redis.exceptions.RedisError as exc:
            return Health(False, None, None, f"{type(exc).__name__}: {exc}")
        aof = all(bool(section.get("aof_enabled")) for section in info)
        try:
            save: Any = self.client.config_get("save")
        except redis.exceptions.ResponseError:  # CONFIG disabled (managed Redis)
            return Health(True, aof, None)
        rule = save.get("save", save.get(b"save", ""))
        return Health(True, aof, rule.decode() if isinstance(rule, bytes) else rule)

    def _persistence_info(self) -> list[dict[str, Any]]:
        if isinstance(self.client, redis.RedisCluster):
            found = self.client.info(
                "persistence", target_nodes=redis.RedisCluster.PRIMARIES
            )
            return list(found.values()) if "aof_enabled" not in found else [found]
        return [self.client.info("persistence")]
