"""Cache-aside with TTLs, leases and stampede protection (single-flight, XFetch)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from labkit.cache._base import (
    PREFIX,
    CacheStats,
    ReadHook,
    check_namespace,
    check_on_read,
    check_prefix,
    decode,
    encode,
    fast_loads,
    raise_wrong_type,
    ttl_ms,
)
from labkit.core.args import (
    DAY,
    YEAR,
    check_callable,
    check_choice,
    check_number,
    check_seconds,
    check_tag,
)
from labkit.core.clients import check_client
from labkit.core.keys import key_part
from labkit.core.scripts import FAULTS, Script, name_fault
from labkit.core.wait import EXPIRY_GRACE

__all__ = ["STAMPEDE_MODES", "Cache"]

#: The stampede protections :class:`Cache` offers.
STAMPEDE_MODES = ("none", "lock", "xfetch")

F = TypeVar("F", bound=Callable[..., Any])
_clock = time.perf_counter
_now = time.time
_log = math.log

_STORE_IF_LEASE = Script("cache_store_if_lease")
_SET = Script("cache_set")
_RELEASE = Script("cache_release_lease")


class Cache:
    """Cache-aside: read Redis, on a miss call the loader and store its value.

    Args:
        client: A ``redis.Redis`` or ``redis.RedisCluster``. Every call is
            bounded by the client's ``socket_timeout`` (none by default in
            redis-py: give the client one if a frozen server must not block).
        namespace: Names this cache's keys (``"users"``); non-empty, no braces.
        ttl: Seconds an entry lives (> 0, at most a year). Every key the cache
            writes has a TTL.
        jitter: Stretch each entry's TTL by a random 0..``jitter`` fraction so
            entries written together do not all expire together (0 to 1).
        stampede: What concurrent misses of one key do. ``"lock"`` (default):
            single-flight, one caller loads under a lease while the others
            wait for its value. ``"xfetch"``: probabilistic early recomputation
            (Vattani, Chierichetti, Lowenstein, PVLDB 2015), no lock, readers
            reload *before* expiry with a probability that rises as it nears.
            ``"none"``: every missing caller loads, the naive cache-aside.
        lease_ttl: Seconds a loader's lease lives (``"lock"``, at most a day);
            also how long a waiter waits for the value. A lease that expired
            meanwhile is taken over (load and store); one taken anew by
            another caller makes the waiter load by itself (fail open,
            nothing stored).
        poll_interval: Seconds between a waiter's checks for the value (0.0001
            to 1).
        beta: XFetch's eagerness (> 0, at most 1e9; 1 is the paper's optimum,
            > 1 recomputes earlier).
        rng: A ``random.Random`` for jitter and XFetch; seed it for repeatable
            runs.
        prefix: What every key starts with (default ``labkit:cache``);
            non-empty, no braces.
        on_read: Called after every read as ``on_read(outcome, seconds)``,
            outcome ``"hit"``, ``"miss"`` or ``"early"`` (XFetch): a hook for
            latency samples (the lab passes a ``labkit.lab.caching.ReadLog``).
            None (default): no clock is read on a hit; :attr:`stats` still
            counts.

    Keys:
        ``<prefix>:{<namespace>:<key>}`` (string): the JSON value; TTL ``ttl``
        (plus jitter). In ``"xfetch"`` mode the JSON is ``{"v": value, "d":
        seconds the load took, "e": expiry as Unix time}``, so a hit is one
        ``GET``.
        ``<prefix>:{<namespace>:<key>}:lease`` (string): the random token of
        the caller loading the entry; TTL ``lease_ttl``.

    The braces are a hash tag holding the namespace *and* the key: an entry
    and its lease share a cluster slot (one Lua script touches both), while
    the same key in two namespaces goes to two slots, not to one hot node.

    A lease also closes the races of delete-on-write and write-through:
    :meth:`invalidate` and :meth:`set` delete the lease, so a value loaded
    before a write is dropped (counted in ``stats.dropped``), not cached.
    Only ``"lock"`` mode loads under a lease; ``"none"`` and ``"xfetch"``
    keep the race (a value read before a write can be stored after it).

    A store the server refuses for lack of memory (``maxmemory`` with
    ``noeviction``) does not fail the read: the loaded value is returned and
    the refusal counted in ``stats.store_errors``.
    """

    #: The Lua scripts it runs: ``print(Cache.store_if_lease.source)``.
    store_if_lease = _STORE_IF_LEASE
    write_through = _SET
    release_lease = _RELEASE

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        namespace: str,
        ttl: float,
        *,
        jitter: float = 0.0,
        stampede: str = "lock",
        lease_ttl: float = 5.0,
        poll_interval: float = 0.005,
        beta: float = 1.0,
        rng: random.Random | None = None,
        prefix: str = PREFIX,
        on_read: ReadHook | None = None,
    ) -> None:
        self.client = check_client(client, owner="Cache")
        self.namespace = check_namespace(namespace)
        self.ttl = check_seconds("ttl", ttl, min=0.001, max=YEAR, min_open=False)
        self.jitter = check_number("jitter", jitter, min=0, max=1)
        self.stampede = check_choice("stampede", stampede, STAMPEDE_MODES)
        self.lease_ttl = check_seconds(
            "lease_ttl", lease_ttl, min=0.001, max=DAY, min_open=False
        )
        self.poll_interval = check_seconds(
            "poll_interval", poll_interval, min=0.0001, max=1, min_open=False
        )
        self.beta = check_number("beta", beta, min=0, max=1e9, min_open=True)
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(
                f"rng={rng!r}: must be a random.Random (e.g. random.Random(7)) or None"
            )
        self.rng = rng if rng is not None else random.Random()
        self.prefix = check_prefix(prefix)
        self.on_read = check_on_read(on_read)
        self.stats = CacheStats()
        self._prefix = f"{self.prefix}:{{{key_part(self.namespace)}:"

    def __repr__(self) -> str:
        return (
            f"Cache(namespace={self.namespace!r}, ttl={self.ttl:g}, "
            f"stampede={self.stampede!r})"
        )

    def key(self, key: str | int) -> str:
        """The Redis key holding ``key``'s entry."""
        return f"{self._prefix}{key_part(check_tag('key', key))}}}"

    def lease_key(self, key: str | int) -> str:
        """The Redis key of the lease taken while ``key`` is loading."""
        return self.key(key) + ":lease"

    # --- reading ----------------------------------------------------------
    def get_or_load(self, key: str | int, loader: Callable[[], Any]) -> Any:
        """Return the cached value of ``key``, calling ``loader()`` on a miss.

        Args:
            key: The entry's name within the namespace: a non-empty str (or
                int) without braces.
            loader: Returns the value from the origin; must be JSON-serialisable.

        Returns:
            The cached or freshly loaded value.

        Raises:
            TypeError, ValueError: ``key`` or ``loader`` is not allowed (raised
                before anything is read or written).
            TypeError: ``loader`` returned a value JSON cannot encode (nothing
                is cached).
            WrongTypeError: The entry's key holds another Redis type.
            Exception: Whatever ``loader`` raised, unchanged; nothing is cached.
        """
        on_read = self.on_read
        start = _clock() if on_read is not None else 0.0
        if not callable(loader):
            check_callable("loader", loader, signature="taking no arguments")
        # The hit path is what bench_cache.py measures against a bare GET, so
        # it is written flat: key checked and built inline, stats inline.
        # (":" and "%" are escaped by key_part, braces refused by check_tag.)
        if (
            type(key) is str
            and key
            and "{" not in key
            and "}" not in key
            and ":" not in key
            and "%" not in key
        ):
            rkey = f"{self._prefix}{key}}}"
        else:
            rkey = self.key(key)
        try:
            raw = self.client.get(rkey)
        except redis.ResponseError as exc:
            raise_wrong_type(self.client, rkey, "string", exc)
        except FAULTS as exc:
            raise name_fault(exc, self.client, f"Cache GET {rkey!r}") from exc
        if raw is not None:
            try:
                value = fast_loads(raw)
            except ValueError:  # an int beyond 64 bits: orjson refuses it
                value = json.loads(raw)
            if self.stampede == "xfetch":
                # The envelope {"v", "d", "e"}: recompute early when
                # d * beta * -ln(U) reaches the time left until e. Rare far
                # from expiry, likely within about one load time of it.
                try:
                    delta, expiry, value = value["d"], value["e"], value["v"]
                    u = 1.0 - self.rng.random()  # in (0, 1]: log() is defined
                    fresh = _now() - delta * self.beta * _log(u) < expiry
                except (TypeError, KeyError):  # not an envelope: reload it
                    return self._xfetch(rkey, loader, start, "miss")
                if not fresh:
                    return self._xfetch(rkey, loader, start, "early")
            stats = self.stats
            with stats.lock:
                stats.hits += 1
            if on_read is not None:
                on_read("hit", _clock() - start)
            return value
        if self.stampede == "xfetch":
            return self._xfetch(rkey, loader, start, "miss")
        try:
            if self.stampede == "lock":
                return self._single_flight(rkey, loader)
            value, _ = self._load(loader)
            self._store(rkey, encode(rkey, value))
            return value
        finally:  # a failed load was a miss too
            self._read("miss", start)

    def _read(self, outcome: str, start: float) -> None:
        """Count a read that was not a plain hit, and report it to ``on_read``."""
        self.stats.record(outcome)
        if self.on_read is not None:
            self.on_read(outcome, _clock() - start)

    def _ttl_ms(self) -> int:
        return ttl_ms(self.ttl, self.jitter, self.rng)

    def _load(self, loader: Callable[[], Any]) -> tuple[Any, float]:
        self.stats.count("loads")
        start = _clock()
        try:
            value = loader()
        except BaseException:
            self.stats.count("load_errors")
            raise
        return value, _clock() - start

    def _run(self, script: Script, rkey: str, args: list[Any]) -> int | None:
        """Run a store script; None if the server refused it for lack of memory."""
        try:
            reply = script(self.client, [rkey, rkey + ":lease"], args)
        except redis.exceptions.OutOfMemoryError:
            self.stats.count("store_errors")
            return None
        if reply == -1:
            raise_wrong_type(self.client, rkey, "string", ValueError(rkey))
        return int(reply)

    def _store(self, rkey: str, payload: str) -> None:
        self._run(_SET, rkey, [payload, self._ttl_ms()])

    def _single_flight(self, rkey: str, loader: Callable[[], Any]) -> Any:
        lease = rkey + ":lease"
        token = secrets.token_hex(8)
        lease_ms = max(1, round(self.lease_ttl * 1000))
        # A lease seen held was taken before this call, so it is gone by the
        # deadline; the grace covers the server's expiry, which is checked in
        # whole milliseconds (a key lives until its last millisecond is over).
        deadline = time.monotonic() + self.lease_ttl + EXPIRY_GRACE
        waited = False
        while True:
            try:
                took = self.client.set(lease, token, nx=True, px=lease_ms)
            except redis.exceptions.OutOfMemoryError:
                self.stats.count("store_errors")  # no lease: load, store nothing
                return self._load(loader)[0]
            if not took and waited and time.monotonic() >= deadline:
                # Fail open: past the deadline the lease is held anew by
                # another caller: answer this caller, store nothing unleased.
                return self._load(loader)[0]
            if took:
                # Another caller may have stored the value between our GET and
                # our SET NX: check again, or we would load it a second time.
                raw = self.client.get(rkey)
                if raw is not None:
                    _RELEASE(self.client, [lease], [token])
                    return decode(raw)
                try:
                    value, _ = self._load(loader)
                    payload = encode(rkey, value)
                except BaseException:
                    _RELEASE(self.client, [lease], [token])
                    raise
                stored = self._run(
                    _STORE_IF_LEASE, rkey, [token, payload, self._ttl_ms()]
                )
                if stored == 0:  # a write cancelled the lease: our value is old
                    self.stats.count("dropped")
                elif stored is None:  # refused for memory: free the waiters now
                    _RELEASE(self.client, [lease], [token])
                return value
            if not waited:
                waited = True
                self.stats.count("waits")
            # Someone else holds the lease: wait for their value, or for the
            # lease to go (their loader failed or was invalidated) and retry.
            while time.monotonic() < deadline:
                time.sleep(self.poll_interval)
                raw, holder = self.client.mget(rkey, lease)
                if raw is not None:
                    return decode(raw)
                if holder is None:
                    # MGET answers nil for a key of another type too: look, or
                    # a hash at the lease key would stall every miss.
                    kind = self.client.type(lease)
                    if kind not in ("none", "string", b"none", b"string"):
                        raise_wrong_type(
                            self.client, lease, "string", ValueError(lease)
                        )
                    break
            # The lease is gone, or the deadline passed: try for the lease
            # once more (a lease that expired at the deadline is ours now).

    def _xfetch(
        self, rkey: str, loader: Callable[[], Any], start: float, outcome: str
    ) -> Any:
        """Load and store an XFetch envelope; ``outcome`` is "miss" or "early"."""
        try:
            value, delta = self._load(loader)
            self._store(rkey, self._envelope(rkey, value, delta))
            return value
        finally:
            self._read(outcome, start)

    def _envelope(self, rkey: str, value: Any, delta: float) -> str:
        encode(rkey, value)  # a clear TypeError before the envelope hides it
        ms = self._ttl_ms()
        entry = {
            "v": value,
            "d": round(delta, 6),
            "e": round(time.time() + ms / 1e3, 3),
        }
        return json.dumps(entry, separators=(",", ":"))

    # --- writing ------------------------------------------------------------
    def invalidate(self, key: str | int) -> bool:
        """Delete ``key``'s entry and cancel any load in flight for it.

        Returns:
            True if an entry was deleted.
        """
        rkey = self.key(key)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(rkey)
        pipe.delete(rkey + ":lease")
        return bool(pipe.execute()[0])

    def set(self, key: str | int, value: Any) -> None:
        """Store ``value`` for ``key`` now (write-through), with the TTL.

        The same script also deletes the lease, so a load that started before
        this write (and read the older value) cannot store it afterwards.

        Raises:
            TypeError, ValueError: ``key`` is not allowed, or ``value`` is not
                JSON-serialisable; nothing is written.
            WrongTypeError: The entry's key holds another Redis type.
            redis.exceptions.OutOfMemoryError: The server is full
                (``noeviction``); nothing is written.
        """
        rkey = self.key(key)
        given = f"set() was given value={value!r:.60},"
        payload = encode(rkey, value, source=given)
        if self.stampede == "xfetch":
            payload = self._envelope(rkey, value, 0.0)
        reply = _SET(self.client, [rkey, rkey + ":lease"], [payload, self._ttl_ms()])
        if reply == -1:
            raise_wrong_type(self.client, rkey, "string", ValueError(rkey))

    # --- decorator ----------------------------------------------------------
    def cached(
        self, fn: F | None = None, *, key: Callable[..., str] | None = None
    ) -> Any:
        """Decorate a function so its results are cached by its arguments.

        Args:
            fn: The function (when used as ``@cache.cached``).
            key: Builds the cache key from the call's arguments; by default the
                function's qualified name plus its arguments as JSON (or their
                SHA-1, when the JSON holds a brace, which a key may not).

        The wrapper gains ``cache_key(*args, **kw)`` and ``invalidate(*args, **kw)``.

        Example:
            >>> @cache.cached
            ... def user(user_id): return db.get_user(user_id)
        """
        if key is not None:
            check_callable("key", key, signature="the function's arguments -> str")

        def wrap(func: F) -> F:
            name = f"{func.__module__}.{func.__qualname__}"

            def key_of(*args: Any, **kwargs: Any) -> str:
                if key is not None:
                    return key(*args, **kwargs)
                try:
                    text = json.dumps(
                        [args, sorted(kwargs.items())], separators=(",", ":")
                    )
                except TypeError as exc:
                    raise TypeError(
                        f"cannot build a cache key for {name}{args!r}: arguments "
                        f"must be JSON-serialisable ({exc}); pass key=... instead"
                    ) from exc
                if "{" in text or "}" in text:
                    text = "sha1:" + hashlib.sha1(text.encode()).hexdigest()
                return f"{name}:{text}"

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self.get_or_load(
                    key_of(*args, **kwargs), lambda: func(*args, **kwargs)
                )

            wrapper.cache_key = key_of  # type: ignore[attr-defined]
            wrapper.invalidate = (  # type: ignore[attr-defined]
                lambda *a, **kw: self.invalidate(key_of(*a, **kw))
            )
            return wrapper  # type: ignore[return-value]

        return wrap(fn) if fn is not None else wrap
