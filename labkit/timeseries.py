"""Library: model state as time series: a bounded sorted set per series, a forecast.

The tutorial this grows from (SEEDS.md row 12) keeps each series in a sorted set
scored by timestamp and predicts the next value from the last 100 points. Done
right, that means: timestamps converted to numbers (a sorted-set score must be
one), one point per timestamp, retention so history cannot grow without bound,
and a health check that says whether the data would survive a restart.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NamedTuple, cast

import redis

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


def to_epoch(timestamp: Any) -> float:
    """Convert a datetime, an ISO 8601 string or epoch seconds to epoch seconds.

    Naive datetimes and ISO strings without an offset are taken as UTC.

    Raises:
        ValueError: The string is not ISO 8601, or the number is not finite.
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
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp={timestamp!r}: epoch seconds must be finite")
        return float(timestamp)
    else:
        raise TypeError(
            f"timestamp={timestamp!r} ({type(timestamp).__name__}): expected a "
            "datetime, an ISO 8601 string or epoch seconds (int or float)"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _check_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"value={value!r} ({type(value).__name__}): expected an int or float"
        )
    if not math.isfinite(value):
        raise ValueError(f"value={value!r}: must be finite")
    return value


class SeriesStore:
    """Time series of numbers, one sorted set per series.

    Args:
        client: A ``redis.Redis`` (``decode_responses=True`` or not).
        prefix: Key namespace.
        max_points: Keep at most this many newest points per series (None: no
            count limit).
        max_age: Keep points at most this many seconds older than the newest
            point of the series (None: no age limit). Age is measured in data
            time, not wall time, so back-filled history is trimmed the same way.
        window: How many newest points :meth:`forecast` fits (the tutorial's 100).

    Keys:
        ``{prefix}:{series}``: sorted set; score = epoch seconds (UTC), member =
        JSON ``{"t": timestamp, "v": value}``. One point per timestamp: adding
        at an existing timestamp replaces the old point.

    Retention is applied by the same Lua script that adds the point, so a
    series never holds more than its bounds, even for a moment.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "lab:ts",
        max_points: int | None = None,
        max_age: float | None = None,
        window: int = 100,
    ) -> None:
        if max_points is not None and (
            isinstance(max_points, bool)
            or not isinstance(max_points, int)
            or max_points < 1
        ):
            raise ValueError(f"max_points={max_points!r}: expected None or an int >= 1")
        if max_age is not None and not (
            isinstance(max_age, int | float) and max_age > 0 and math.isfinite(max_age)
        ):
            raise ValueError(f"max_age={max_age!r}: expected None or seconds > 0")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window={window!r}: expected an int >= 1")
        if not prefix:
            raise ValueError("prefix='': expected a non-empty key namespace")
        self.client = client
        self.prefix = prefix
        self.max_points = max_points
        self.max_age = max_age
        self.window = window
        lua = resources.files("labkit").joinpath("lua/timeseries_add.lua").read_text()
        self._add = client.register_script(lua)

    def key(self, series: str) -> str:
        """The sorted-set key holding ``series``."""
        if not isinstance(series, str) or not series:
            raise ValueError(f"series={series!r}: expected a non-empty string")
        return f"{self.prefix}:{series}"

    def add(self, series: str, timestamp: Any, value: float) -> int:
        """Store ``value`` at ``timestamp`` and apply retention.

        Args:
            series: Series name, e.g. ``"temperature"``.
            timestamp: A datetime, an ISO 8601 string or epoch seconds.
            value: The observation (int or float, finite).

        Returns:
            Number of points in the series afterwards.

        Raises:
            ValueError: Unparseable timestamp, or a non-finite number.
            TypeError: A timestamp or value of the wrong type.
        """
        ts = to_epoch(timestamp)
        member = json.dumps({"t": ts, "v": _check_value(value)}, separators=(",", ":"))
        return int(
            self._add(
                keys=[self.key(series)],
                args=[repr(ts), member, self.max_points or 0, self.max_age or 0],
            )
        )

    def recent(self, series: str, n: int = 100) -> list[Point]:
        """The ``n`` newest points, oldest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r}: expected an int >= 1")
        raw = self.client.zrange(self.key(series), -n, -1)
        points = []
        for member in raw:
            data = json.loads(cast(str | bytes, member))
            points.append(Point(float(data["t"]), data["v"]))
        return points

    def count(self, series: str) -> int:
        """Number of points stored for ``series``."""
        return int(self.client.zcard(self.key(series)))

    def delete(self, series: str) -> bool:
        """Drop the whole series; True if it existed."""
        return bool(self.client.delete(self.key(series)))

    def forecast(self, series: str, window: int | None = None) -> Forecast:
        """Predict the next value by a least-squares line over the newest points.

        The line is fitted to value against time over the last ``window``
        points (default: the store's ``window``) and read off one mean spacing
        after the newest point, so evenly spaced 10, 20, 30 predict 40. Times
        are centred before fitting: epoch seconds (~1.7e9) squared would lose
        the precision that the differences need.
        """
        points = self.recent(series, window or self.window)
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
        """Is the server reachable, and would its data survive a restart?"""
        try:
            self.client.ping()
        except redis.exceptions.RedisError as exc:
            return Health(False, None, None, f"{type(exc).__name__}: {exc}")
        info = self.client.info("persistence")
        aof = bool(info.get("aof_enabled"))
        try:
            save: str | None = self.client.config_get("save").get("save", "")
        except redis.exceptions.ResponseError:  # CONFIG disabled (managed Redis)
            save = None
        if isinstance(save, bytes):
            save = save.decode()
        return Health(True, aof, save)
