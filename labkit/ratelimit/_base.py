"""What every limiter shares: arguments, the script call, the batch form."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from struct import pack as _pack
from typing import Any, ClassVar, NamedTuple

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from labkit.core.args import (
    MAX_COUNT,
    YEAR,
    Key,
    check_callable,
    check_count,
    check_key,
    check_name,
    check_number,
    check_seconds,
)
from labkit.core.clients import check_client
from labkit.core.keys import key_part
from labkit.core.scripts import FAULTS, Script, name_fault, run_batch
from labkit.errors import WrongTypeError

__all__ = ["MAX_PERIOD", "Decision", "Limiter", "Rate"]

_US = 1_000_000
#: The longest period (and the longest a full bucket may take to refill): a year.
MAX_PERIOD = YEAR
#: The latest time a ``clock`` may return: about the year 5138, in seconds.
_MAX_CLOCK = 1e11


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


def _period_us(name: str, value: object) -> int:
    """Seconds (int or float, 0.001 to a year) -> whole microseconds."""
    seconds = check_seconds(name, value, min=0.001, max=MAX_PERIOD, min_open=False)
    return round(seconds * _US)


def _decisions(reply: str | bytes) -> list[Decision]:
    """Parse a script's ``"<allowed> <remaining> <retry us> <reset us>"`` per key."""
    it = iter(map(int, reply.split()))
    # tuple.__new__ straight away: NamedTuple's own __new__ is a Python call more.
    return [
        _new_tuple(Decision, (a == 1, b, c / _US, d / _US))
        for a, b, c, d in zip(it, it, it, it, strict=True)
    ]


_new_tuple = tuple.__new__
_ONE = ("1", b"1")
#: The most keys one script call decides (a longer batch is several calls, one
#: round trip): a call blocks the server while it runs.
_CHUNK = 1000


def _check_keys(keys: object) -> list[Any]:
    # A bare str is one key, not a list of one-letter keys. (core.args has
    # check_names, but limiter keys may also be ints, as in allow().)
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise TypeError(
            f"keys={keys!r}: must be a list of keys (a bare str is one key: "
            f"write [{keys!r}])"
        )
    return list(keys)


class Limiter:
    """Base class: subclasses name their script and key prefix.

    Each decision is one Lua script, so the check and the update are atomic.
    Every argument is checked in Python before anything is sent, and each
    script checks its arguments and the key's current value again before its
    first write, so a refused call writes nothing; every key a script writes
    gets its expiry in that same call, so no crash point can leave a limiter
    key without a TTL.

    Works on a ``RedisCluster`` as on one server: a decision touches one key,
    and a batch is one script call per hash slot, in one cluster pipeline. On
    a frozen server a call fails when the client's ``socket_timeout`` runs
    out: give the client one.
    A call that timed out may still be decided once the server wakes up (its
    request was already in the server's socket): a timeout is not a refusal,
    and retrying it may take a second unit.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster``), either decoding.
        limit: Units allowed per ``period``: an int from 1 to 2**31 - 1.
        period: Seconds, from 0.001 to a year (kept to the microsecond).
        burst: Back-to-back capacity, for algorithms that have one (1 to
            2**31 - 1; default ``limit``); a full burst must refill within
            a year (``period * burst / limit``).
        prefix: Start of every key this limiter writes; the request key is
            appended after a colon.
        lookup: Optional per-key rate, called with the request key on every
            call: returns an int (the limit), a :class:`Rate`, or None for the
            defaults. For tiers (user 1: 10 a minute, user 2: 20 a minute) and
            limits held elsewhere, such as in a feature flag. What it returns
            is checked like the constructor's arguments.
        clock: Optional function returning the time in seconds, used instead
            of the server's ``TIME``. For simulations and tests that replay a
            trace; every client of a key must then use the same clock.

    Raises:
        TypeError, ValueError: An argument is of the wrong type or out of range.
    """

    script: ClassVar[Script]
    _default_prefix: ClassVar[str]
    _redis_type: ClassVar[str]  # what the key holds: "hash", "zset", "string"
    _state: ClassVar[str]  # the same, in words, for error messages
    _has_burst: ClassVar[bool] = False

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        limit: int,
        period: float,
        *,
        burst: int | None = None,
        prefix: str | None = None,
        lookup: Callable[[str], int | Rate | None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        cls = type(self).__name__
        self.client = check_client(client, owner=cls, cluster=True)
        if burst is not None and not self._has_burst:
            raise TypeError(
                f"burst={burst!r}: {cls} has no burst (TokenBucket, GCRA do)"
            )
        self.limit = check_count("limit", limit)
        self.period = period
        self._period_us = _period_us("period", period)
        self.burst = check_count("burst", burst) if burst is not None else None
        self._config, self._capacity = self._rate_config(
            self.limit, self._period_us, self.burst, "burst"
        )
        self.prefix = check_name(
            "prefix", self._default_prefix if prefix is None else prefix
        )
        if lookup is not None:
            check_callable("lookup", lookup, signature="key -> int, Rate or None")
        self.lookup = lookup
        if clock is not None:
            check_callable("clock", clock, signature="-> seconds")
        self.clock = clock

    def __repr__(self) -> str:
        burst = f", burst={self.burst}" if self.burst is not None else ""
        return (
            f"{type(self).__name__}(limit={self.limit}, period={self.period}"
            f"{burst}, prefix={self.prefix!r})"
        )

    def key(self, key: Key) -> str:
        """The Redis key holding the state of request key ``key``."""
        if type(key) is not str or not key:
            key = check_key("key", key)
        return f"{self.prefix}:{key_part(key)}"

    def _rate_config(
        self, limit: int, period_us: int, burst: int | None, burst_name: str
    ) -> tuple[bytes, int]:
        """ARGV[1] (limit, period and capacity as three packed doubles, so a
        call encodes less and the script parses no text) and the capacity a
        single request may take at most."""
        capacity = (burst or limit) if self._has_burst else limit
        # A bucket holding more than a year of refill would need a key that
        # outlives a year; the scripts refuse it too, before writing.
        refill = period_us / limit * capacity / _US
        if refill > MAX_PERIOD:
            raise ValueError(
                f"{burst_name}={capacity!r}: a full bucket would take "
                f"period * burst / limit = {refill:g} s to refill; must be at "
                f"most {MAX_PERIOD} (a year)"
            )
        return _pack("<ddd", limit, period_us, capacity), capacity

    def _lookup_config(self, key: str) -> tuple[bytes, int]:
        assert self.lookup is not None
        found = self.lookup(key)
        if found is None:
            return self._config, self._capacity
        where = f"lookup({key!r})"
        if not isinstance(found, Rate):
            found = Rate(found)
        limit = check_count(f"{where} limit", found.limit)
        period_us = self._period_us
        if found.period is not None:
            period_us = _period_us(f"{where} period", found.period)
        burst = found.burst if found.burst is not None else self.burst
        if burst is not None:
            if not self._has_burst:
                raise TypeError(
                    f"{where} burst={burst!r}: {type(self).__name__} has no burst"
                )
            burst = check_count(f"{where} burst", burst)
        return self._rate_config(limit, period_us, burst, f"{where} burst")

    def _args(self, key: str, cost: int) -> tuple[Any, ...]:
        """ARGV for one call: config [, cost [, now (us)]]."""
        config, capacity = self._config, self._capacity
        if self.lookup is not None:
            config, capacity = self._lookup_config(key)
        self._check_cost(cost, capacity)
        if self.clock is not None:
            return (config, cost, self._now())
        return (config,) if cost == 1 else (config, cost)

    def _key_error(self, key: str, exc: redis.ResponseError) -> Exception:
        """A clearer error for a key that holds something else, or ``exc``."""
        if not str(exc).startswith(("WRONGTYPE", "BADSTATE")):
            return exc
        found = self.client.type(key)
        found = found.decode() if isinstance(found, bytes) else str(found)
        name = type(self).__name__
        # BADSTATE says what the key holds: "... <key> holds <what>, not ...".
        detail = str(exc).partition(f"{key} holds ")[2].partition(", not ")[0]
        what = f" ({detail})" if detail else ""
        return WrongTypeError(
            f"key {key!r} holds a {found}{what} that is not {name} state "
            f"({self._state}); nothing was written. Use another prefix= or key, or "
            "delete the key.",
            key=key,
            found=found,
            expected=self._state,
        )

    def allow(self, key: Key, cost: int = 1) -> Decision:
        """Decide one request for ``key``, taking ``cost`` units if allowed.

        One round trip (``EVALSHA``); the decision and the update are atomic
        on the server.

        Args:
            key: The thing being limited (a user id, an IP address...): a
                non-empty str, or an int.
            cost: Units this request takes, 1..limit (1..burst if there is one).

        Returns:
            A :class:`Decision`; times in seconds.

        Raises:
            TypeError, ValueError: A bad key or cost, or a bad answer from
                ``lookup`` or ``clock``; nothing is sent.
            WrongTypeError: The key holds something else; nothing is written.
        """
        if type(key) is not str or not key:
            key = check_key("key", key)
        full = f"{self.prefix}:{key_part(key)}"
        if (
            type(cost) is int
            and cost == 1
            and self.lookup is None
            and self.clock is None
        ):
            args: tuple[Any, ...] = (self._config,)  # the common case, inlined
        else:
            args = self._args(key, cost)
        # The script's EVALSHA straight through the client (Script.__call__ less
        # its wrappers: this is the hot path), loading the script on NOSCRIPT.
        try:
            try:
                reply = self.client.execute_command(
                    "EVALSHA", self.script.sha, 1, full, *args
                )
            except NoScriptError:
                self.script.load(self.client)
                reply = self.client.execute_command(
                    "EVALSHA", self.script.sha, 1, full, *args
                )
        except FAULTS as exc:
            what = f"script {self.script.name}, keys [{full!r:.200}]"
            raise name_fault(exc, self.client, what) from exc
        except redis.ResponseError as exc:
            raise self._key_error(full, exc) from exc
        allowed, remaining, retry, reset = reply.split()
        # tuple.__new__ straight away: NamedTuple's own __new__ is a Python call
        # more, on the hot path of every decision.
        return _new_tuple(
            Decision,
            (allowed in _ONE, int(remaining), int(retry) / _US, int(reset) / _US),
        )

    def allow_many(self, keys: Iterable[Key], cost: int = 1) -> list[Decision]:
        """Decide one request for each of ``keys`` in a single round trip.

        The keys go to the script in one call (up to 1,000 keys per call; a
        ``RedisCluster`` gets one call per hash slot, in one pipeline), which
        decides them in order: a key listed twice is decided twice, and the
        decisions equal those of one :meth:`allow` per key. Each call is
        atomic; a batch split over several calls is not, as a whole. With a
        ``clock``, it is read once per key, in order, so a trace of timestamps
        can be replayed in one round trip. Every key and argument is checked
        before anything is sent; if one key holds something else,
        :class:`WrongTypeError` is raised after the batch ran (the other
        keys' decisions were taken; that key was left as it was).

        Returns:
            One :class:`Decision` per key, in the order given.
        """
        items = _check_keys(keys)
        prefix, lookup, clock = self.prefix, self.lookup, self.clock
        fulls: list[str] = []
        configs: list[bytes] = []
        nows: list[int] = []
        config, capacity = self._config, self._capacity
        plain = lookup is None and clock is None
        for k in items:
            if type(k) is not str or not k:
                k = check_key("keys item", k)
            fulls.append(f"{prefix}:{key_part(k)}")
            if plain:
                if len(fulls) == 1:  # checked as allow() would, after the first key
                    self._check_cost(cost, capacity)
                continue
            if lookup is not None:
                config, capacity = self._lookup_config(k)
                configs.append(config)
            self._check_cost(cost, capacity)
            if clock is not None:
                nows.append(self._now())
        if not fulls:
            return []
        # Calls: (positions, keys, ARGV): one per slot (on a cluster), per run of
        # equal config (with a lookup), per _CHUNK keys.
        units: list[tuple[list[int] | None, list[str], tuple[Any, ...]]]
        if plain and len(fulls) <= _CHUNK and not isinstance(self.client, RedisCluster):
            units = [(None, fulls, (config,) if cost == 1 else (config, cost))]
        else:
            units = list(self._units(fulls, configs, nows, cost))
        try:
            if len(units) == 1:
                _, unit_keys, argv = units[0]
                try:
                    replies = [
                        self.client.execute_command(
                            "EVALSHA",
                            self.script.sha,
                            len(unit_keys),
                            *unit_keys,
                            *argv,
                        )
                    ]
                except NoScriptError:
                    self.script.load(self.client)
                    replies = [
                        self.client.execute_command(
                            "EVALSHA",
                            self.script.sha,
                            len(unit_keys),
                            *unit_keys,
                            *argv,
                        )
                    ]
            else:
                replies = run_batch(
                    self.client, [(self.script, u[1], u[2]) for u in units]
                )
        except FAULTS as exc:
            what = f"script {self.script.name}, a batch of {len(fulls)} keys"
            raise name_fault(exc, self.client, what) from exc
        except redis.ResponseError as exc:
            raise self._key_error(self._culprit(fulls, exc), exc) from exc
        if units[0][0] is None:
            return _decisions(replies[0])
        out: list[Any] = [None] * len(fulls)
        for (positions, _, _), reply in zip(units, replies, strict=True):
            for i, decision in zip(positions or (), _decisions(reply), strict=True):
                out[i] = decision
        return out

    def _check_cost(self, cost: object, capacity: int) -> None:
        if type(cost) is not int or cost != 1:
            what = "burst" if self._has_burst else "limit"
            check_count("cost", cost, max=MAX_COUNT)
            if cost > capacity:  # type: ignore[operator]
                raise ValueError(
                    f"cost={cost!r}: more than the {what} of {capacity}, so it could "
                    f"never be allowed; allowed: 1..{capacity}"
                )

    def _now(self) -> int:
        assert self.clock is not None
        now = check_number(
            "clock()", self.clock(), min=0, max=_MAX_CLOCK, unit="of seconds"
        )
        return round(now * _US)

    def _units(
        self, fulls: list[str], configs: list[bytes], nows: list[int], cost: int
    ) -> list[tuple[list[int], list[str], tuple[Any, ...]]]:
        """Split a batch into script calls: per hash slot on a cluster (a call's
        keys must share one), per run of equal config, per _CHUNK keys. The
        calls run in order, so a key's requests stay in order."""
        groups: dict[int, list[int]] = {}
        if isinstance(self.client, RedisCluster):
            slot = self.client.keyslot
            for i, full in enumerate(fulls):
                groups.setdefault(slot(full), []).append(i)  # type: ignore[no-untyped-call]
        else:
            groups[0] = list(range(len(fulls)))
        units = []
        for positions in groups.values():
            run: list[int] = []
            for i in positions:
                if run and (
                    len(run) >= _CHUNK or (configs and configs[i] != configs[run[0]])
                ):
                    units.append(self._unit(run, fulls, configs, nows, cost))
                    run = []
                run.append(i)
            units.append(self._unit(run, fulls, configs, nows, cost))
        return units

    def _unit(
        self,
        run: list[int],
        fulls: list[str],
        configs: list[bytes],
        nows: list[int],
        cost: int,
    ) -> tuple[list[int], list[str], tuple[Any, ...]]:
        config = configs[run[0]] if configs else self._config
        argv = (config, cost, *(nows[i] for i in run)) if nows else (config, cost)
        return run, [fulls[i] for i in run], argv

    def _culprit(self, keys: list[str], exc: redis.ResponseError) -> str:
        """Which key of a batch the error is about (the script names it)."""
        text = str(exc)
        for key in keys:
            if f": {key} holds " in text or f": {key} is of another type" in text:
                return key
        for key in keys:  # not one of ours: look
            found = self.client.type(key)
            found = found.decode() if isinstance(found, bytes) else str(found)
            if found not in ("none", self._redis_type):
                return key
        return keys[0]

    def reset(self, key: str) -> None:
        """Forget ``key``'s state: its next request sees the full limit."""
        self.client.delete(self.key(key))
