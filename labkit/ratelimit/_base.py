"""What every limiter shares: arguments, the script call, the batch form."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any, ClassVar, NamedTuple

import redis
from redis.exceptions import NoScriptError

__all__ = ["Decision", "Limiter", "Rate"]

_US = 1_000_000


class Decision(NamedTuple):
    """What a limiter decided about one request.

    Attributes:
        allowed: True if the request may proceed (its cost was taken).
        remaining: Whole units that could still be taken right now.
        retry_after: Seconds until a request of the same cost would be
            allowed; 0.0 when ``allowed``.
        reset_after: Seconds until the key is back to its fresh state (full
            limit available) if no further request arrives.
    """

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float


class Rate(NamedTuple):
    """A per-key rate returned by a limiter's ``lookup``.

    Attributes:
        limit: Units allowed per ``period``.
        period: Seconds; None keeps the limiter's own period.
        burst: For limiters that have one; None means ``limit``.
    """

    limit: int
    period: float | None = None
    burst: int | None = None


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r}: must be an int >= 1")
    if value <= 0:
        raise ValueError(f"{name}={value!r}: must be >= 1")
    return value


def _check_period(value: object) -> int:
    """Seconds (int or float) -> whole microseconds, at least one millisecond."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"period={value!r}: must be a number of seconds > 0")
    if not math.isfinite(value) or value < 0.001:
        raise ValueError(
            f"period={value!r}: must be a finite number of seconds >= 0.001"
        )
    return round(value * _US)


def _decision(reply: str | bytes) -> Decision:
    """Parse a script's ``"<allowed> <remaining> <retry us> <reset us>"``."""
    allowed, remaining, retry, reset = reply.split()
    return Decision(
        allowed in ("1", b"1"), int(remaining), int(retry) / _US, int(reset) / _US
    )


def _load_lua(name: str) -> str:
    return resources.files("labkit").joinpath(f"lua/ratelimit_{name}.lua").read_text()


class Limiter:
    """Base class: subclasses name their script and key prefix.

    Each decision is one Lua script, so the check and the update are atomic;
    every key a script writes gets its expiry in that same call, so no crash
    point can leave a limiter key without a TTL.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster``); the script is
            registered on it once.
        limit: Units allowed per ``period`` (an int >= 1).
        period: Seconds (int or float, >= 0.001; kept to the microsecond).
        prefix: Start of every key this limiter writes; the request key is
            appended after a colon.
        lookup: Optional per-key rate, called with the request key on every
            call: returns an int (the limit), a :class:`Rate`, or None for the
            defaults. For tiers (user 1: 10 a minute, user 2: 20 a minute) and
            limits held elsewhere, such as in a feature flag.
        clock: Optional function returning the time in seconds, used instead
            of the server's ``TIME``. For simulations and tests that replay a
            trace; every client of a key must then use the same clock.

    Raises:
        TypeError, ValueError: An argument is of the wrong type or out of range.
    """

    _script_name: ClassVar[str]
    _default_prefix: ClassVar[str]
    _has_burst: ClassVar[bool] = False

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        period: float,
        *,
        burst: int | None = None,
        prefix: str | None = None,
        lookup: Callable[[str], int | Rate | None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        cls = type(self).__name__
        if not isinstance(client, redis.Redis | redis.RedisCluster):
            raise TypeError(f"client={client!r}: must be a redis.Redis or RedisCluster")
        self.limit = _check_count("limit", limit)
        self.period = period
        self._period_us = _check_period(period)
        if burst is not None and not self._has_burst:
            raise TypeError(
                f"burst={burst!r}: {cls} has no burst (TokenBucket, GCRA do)"
            )
        self.burst = _check_count("burst", burst) if burst is not None else None
        prefix = self._default_prefix if prefix is None else prefix
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"prefix={prefix!r}: must be a non-empty str")
        self.prefix = prefix
        if lookup is not None and not callable(lookup):
            raise TypeError(f"lookup={lookup!r}: must be callable (key -> limit)")
        self.lookup = lookup
        if clock is not None and not callable(clock):
            raise TypeError(f"clock={clock!r}: must be callable (-> seconds)")
        self.clock = clock
        self.client = client
        self._script = client.register_script(_load_lua(self._script_name))
        self._config = self._rate_config(self.limit, self._period_us, self.burst)
        self._capacity = self._config_capacity(self.limit, self.burst)
        self._execute = client.execute_command

    def __repr__(self) -> str:
        burst = f", burst={self.burst}" if self.burst is not None else ""
        return (
            f"{type(self).__name__}(limit={self.limit}, period={self.period}"
            f"{burst}, prefix={self.prefix!r})"
        )

    def key(self, key: str) -> str:
        """The Redis key holding the state of request key ``key``."""
        return f"{self.prefix}:{key}"

    def _config_capacity(self, limit: int, burst: int | None) -> int:
        return (burst or limit) if self._has_burst else limit

    def _rate_config(self, limit: int, period_us: int, burst: int | None) -> bytes:
        """ARGV[1]: one pre-encoded argument, so a call encodes less."""
        return f"{limit} {period_us} {self._config_capacity(limit, burst)}".encode()

    def _args(self, key: str, cost: int) -> tuple[Any, ...]:
        """ARGV for one call: config [, cost [, now (us)]]."""
        if type(key) is not str:
            raise TypeError(f"key={key!r}: must be a str")
        config, capacity = self._config, self._capacity
        if self.lookup is not None:
            found = self.lookup(key)
            if found is not None:
                if not isinstance(found, Rate):
                    found = Rate(found)
                limit = _check_count("lookup limit", found.limit)
                period_us = self._period_us
                if found.period is not None:
                    period_us = _check_period(found.period)
                burst = found.burst if found.burst is not None else self.burst
                if burst is not None:
                    burst = _check_count("lookup burst", burst)
                config = self._rate_config(limit, period_us, burst)
                capacity = self._config_capacity(limit, burst)
        if type(cost) is not int or cost != 1:
            _check_count("cost", cost)
            if cost > capacity:
                what = "burst" if self._has_burst else "limit"
                raise ValueError(
                    f"cost={cost!r}: more than the {what} of {capacity}, so it could "
                    f"never be allowed; allowed: 1..{capacity}"
                )
        if self.clock is not None:
            return (config, cost, round(self.clock() * _US))
        return (config,) if cost == 1 else (config, cost)

    def _call(self, key: str, args: tuple[Any, ...]) -> Any:
        # execute_command rather than Script.__call__: this is the hot path,
        # and the wrapper's per-call work shows in decisions per second.
        try:
            return self._execute("EVALSHA", self._script.sha, 1, key, *args)
        except NoScriptError:
            self._script.sha = self.client.script_load(self._script.script)
            return self._execute("EVALSHA", self._script.sha, 1, key, *args)

    def allow(self, key: str, cost: int = 1) -> Decision:
        """Decide one request for ``key``, taking ``cost`` units if allowed.

        One round trip (``EVALSHA``); the decision and the update are atomic
        on the server.

        Args:
            key: The thing being limited (a user id, an IP address...).
            cost: Units this request takes, 1..limit (1..burst if there is one).

        Returns:
            A :class:`Decision`; times in seconds.
        """
        reply = self._call(f"{self.prefix}:{key}", self._args(key, cost))
        return _decision(reply)

    def allow_many(self, keys: Iterable[str], cost: int = 1) -> list[Decision]:
        """Decide one request for each of ``keys`` in a single round trip.

        Each decision is atomic on its own (the batch as a whole is not: it
        is a non-transactional pipeline). A key listed twice is decided twice,
        in order.

        Returns:
            One :class:`Decision` per key, in the order given.
        """
        calls = [(self.key(k), self._args(k, cost)) for k in keys]
        replies = self._run_batch(calls)
        return [_decision(reply) for reply in replies]

    def _run_batch(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        # evalsha straight on the pipeline: redis-py's Script objects make a
        # pipeline send SCRIPT EXISTS first, a second round trip per batch.
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for i in todo:
                key, args = calls[i]
                pipe.evalsha(self._script.sha, 1, key, *args)
            results = pipe.execute(raise_on_error=False)
            missing = []
            for i, res in zip(todo, results, strict=True):
                if isinstance(res, NoScriptError) and attempt == 0:
                    missing.append(i)  # not run: safe to send again
                elif isinstance(res, Exception):
                    raise res
                else:
                    replies[i] = res
            if not missing:
                break
            self._script.sha = self.client.script_load(self._script.script)
            todo = missing
        return replies

    def reset(self, key: str) -> None:
        """Forget ``key``'s state: its next request sees the full limit."""
        self.client.delete(self.key(key))
