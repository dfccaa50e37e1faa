"""Cache-aside with TTLs, leases and stampede protection (single-flight, XFetch)."""

from __future__ import annotations

import functools
import json
import math
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

from labkit.cache._base import (
    PREFIX,
    CacheStats,
    check_client,
    check_jitter,
    check_key,
    check_loader,
    check_namespace,
    check_seconds,
    decode,
    encode,
    fast_loads,
    load_script,
    ttl_ms,
)

__all__ = ["STAMPEDE_MODES", "Cache"]

#: The stampede protections :class:`Cache` offers.
STAMPEDE_MODES = ("none", "lock", "xfetch")

F = TypeVar("F", bound=Callable[..., Any])
_clock = time.perf_counter


class Cache:
    """Cache-aside: read Redis, on a miss call the loader and store its value.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster``).
        namespace: Names this cache's keys (``"users"``); non-empty, no braces.
        ttl: Seconds an entry lives (> 0). Every key the cache writes has a TTL.
        jitter: Stretch each entry's TTL by a random 0..``jitter`` fraction so
            entries written together do not all expire together (0 to 1).
        stampede: What concurrent misses of one key do. ``"lock"`` (default):
            single-flight, one caller loads under a lease while the others
            wait for its value. ``"xfetch"``: probabilistic early recomputation
            (Vattani, Chierichetti, Lowenstein, PVLDB 2015), no lock, readers
            reload *before* expiry with a probability that rises as it nears.
            ``"none"``: every missing caller loads, the naive cache-aside.
        lease_ttl: Seconds a loader's lease lives (``"lock"``); also how long a
            waiter waits before loading by itself (fail open, nothing stored).
        poll_interval: Seconds between a waiter's checks for the value.
        beta: XFetch's eagerness (> 0; 1 is the paper's optimum, > 1 earlier).
        rng: Random source for jitter and XFetch, seed it for repeatable runs.
        max_samples: Latency samples kept in :attr:`stats`.

    Keys (``<ns>`` = namespace, ``<key>`` = the caller's key)::

        lab:cache:<ns>:{<key>}        string  JSON value, PX ttl
                                              (xfetch: {"v": value, "d": load s})
        lab:cache:<ns>:{<key>}:lease  string  random token of the caller loading
                                              it, PX lease_ttl

    The braces are a hash tag: the entry and its lease share a cluster slot
    because one Lua script touches both. The hit path is one ``GET`` (two
    commands pipelined in ``"xfetch"`` mode, which also needs ``PTTL``).

    A lease also closes the delete-on-write race: :meth:`invalidate` deletes
    the lease, so a value loaded before a write is dropped, not cached.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        ttl: float,
        *,
        jitter: float = 0.0,
        stampede: str = "lock",
        lease_ttl: float = 5.0,
        poll_interval: float = 0.005,
        beta: float = 1.0,
        rng: random.Random | None = None,
        max_samples: int = 100_000,
    ) -> None:
        check_client(client)
        self.client = client
        self.namespace = check_namespace(namespace)
        self.ttl = check_seconds("ttl", ttl)
        self.jitter = check_jitter(jitter)
        if stampede not in STAMPEDE_MODES:
            raise ValueError(
                f"stampede={stampede!r}: expected one of {', '.join(STAMPEDE_MODES)}"
            )
        self.stampede = stampede
        self.lease_ttl = check_seconds("lease_ttl", lease_ttl)
        self.poll_interval = check_seconds("poll_interval", poll_interval)
        self.beta = check_seconds("beta", beta)
        self.rng = rng if rng is not None else random.Random()
        self.stats = CacheStats(max_samples=max_samples)
        self._prefix = f"{PREFIX}:{self.namespace}:"
        self._store_if_lease = load_script(client, "cache_store_if_lease.lua")
        self._release = load_script(client, "cache_release_lease.lua")

    def __repr__(self) -> str:
        return (
            f"Cache(namespace={self.namespace!r}, ttl={self.ttl:g}, "
            f"stampede={self.stampede!r})"
        )

    def key(self, key: str | int) -> str:
        """The Redis key holding ``key``'s entry."""
        return f"{PREFIX}:{self.namespace}:{{{check_key('key', key)}}}"

    # --- reading ----------------------------------------------------------
    def get_or_load(self, key: str | int, loader: Callable[[], Any]) -> Any:
        """Return the cached value of ``key``, calling ``loader()`` on a miss.

        Args:
            key: The entry's name within the namespace.
            loader: Returns the value from the origin; must be JSON-serialisable.

        Returns:
            The cached or freshly loaded value.

        Raises:
            TypeError: ``loader`` is not callable, or returned a value JSON
                cannot encode (nothing is cached).
            Exception: Whatever ``loader`` raised, unchanged; nothing is cached.
        """
        start = _clock()
        if not callable(loader):
            check_loader(loader)
        # The hit path is what bench_cache.py measures against a bare GET, so
        # it is written flat: key built inline for str, stats updated inline.
        rkey = f"{self._prefix}{{{key}}}" if type(key) is str else self.key(key)
        if self.stampede == "xfetch":
            return self._get_xfetch(rkey, loader, start)
        raw = self.client.get(rkey)
        if raw is not None:
            try:
                value = fast_loads(raw)
            except ValueError:  # an int beyond 64 bits: orjson refuses it
                value = json.loads(raw)
            stats = self.stats
            with stats.lock:
                stats.hits += 1
                if stats.growing:  # CacheStats.add_sample, inlined for speed
                    stats.codes.append(0)
                    stats.seconds.append(_clock() - start)
                    stats.growing = len(stats.seconds) < stats.max_samples
                    stats.written += 1
                else:
                    stats.add_sample(0, _clock() - start)
            return value
        try:
            if self.stampede == "lock":
                return self._single_flight(rkey, loader)
            value, _ = self._load(loader)
            self.client.set(rkey, encode(rkey, value), px=self._ttl_ms())
            return value
        finally:  # a failed load was a miss too
            self.stats.record("miss", time.perf_counter() - start)

    def _ttl_ms(self) -> int:
        return ttl_ms(self.ttl, self.jitter, self.rng)

    def _load(self, loader: Callable[[], Any]) -> tuple[Any, float]:
        self.stats.count("loads")
        start = time.perf_counter()
        try:
            value = loader()
        except BaseException:
            self.stats.count("load_errors")
            raise
        return value, time.perf_counter() - start

    def _single_flight(self, rkey: str, loader: Callable[[], Any]) -> Any:
        lease = rkey + ":lease"
        token = secrets.token_hex(8)
        lease_ms = max(1, round(self.lease_ttl * 1000))
        deadline = time.monotonic() + self.lease_ttl
        waited = False
        while True:
            if self.client.set(lease, token, nx=True, px=lease_ms):
                # Another caller may have stored the value between our GET and
                # our SET NX: check again, or we would load it a second time.
                raw = self.client.get(rkey)
                if raw is not None:
                    self._release(keys=[lease], args=[token])
                    return decode(raw)
                try:
                    value, _ = self._load(loader)
                    payload = encode(rkey, value)
                except BaseException:
                    self._release(keys=[lease], args=[token])
                    raise
                self._store_if_lease(
                    keys=[rkey, lease], args=[token, payload, self._ttl_ms()]
                )
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
                    break
            else:
                # Fail open: answer this caller, but store nothing unleased.
                return self._load(loader)[0]

    def _get_xfetch(self, rkey: str, loader: Callable[[], Any], start: float) -> Any:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(rkey)
        pipe.pttl(rkey)
        raw, pttl = pipe.execute()
        outcome = "miss"
        if raw is not None:
            entry = decode(raw)
            # Recompute early when delta * beta * -ln(U) reaches the time left:
            # rare far from expiry, likely within about one load time of it.
            u = 1.0 - self.rng.random()  # in (0, 1]: log() is defined
            gap_ms = -entry["d"] * self.beta * math.log(u) * 1000
            if pttl < 0 or gap_ms < pttl:
                self.stats.record("hit", time.perf_counter() - start)
                return entry["v"]
            outcome = "early"
        try:
            value, delta = self._load(loader)
            encode(rkey, value)  # a clear TypeError before the envelope hides it
            entry = {"v": value, "d": round(delta, 6)}
            self.client.set(
                rkey, json.dumps(entry, separators=(",", ":")), px=self._ttl_ms()
            )
            return value
        finally:
            self.stats.record(outcome, time.perf_counter() - start)

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
        """Store ``value`` for ``key`` directly (write-through), with the TTL."""
        rkey = self.key(key)
        payload = encode(rkey, value)
        if self.stampede == "xfetch":
            payload = json.dumps({"v": value, "d": 0.0}, separators=(",", ":"))
        self.client.set(rkey, payload, px=self._ttl_ms())

    # --- decorator ----------------------------------------------------------
    def cached(
        self, fn: F | None = None, *, key: Callable[..., str] | None = None
    ) -> Any:
        """Decorate a function so its results are cached by its arguments.

        Args:
            fn: The function (when used as ``@cache.cached``).
            key: Builds the cache key from the call's arguments; by default the
                function's qualified name plus its arguments as JSON.

        The wrapper gains ``cache_key(*args, **kw)`` and ``invalidate(*args, **kw)``.

        Example:
            >>> @cache.cached
            ... def user(user_id): return db.get_user(user_id)
        """
        if key is not None and not callable(key):
            raise TypeError(f"key={key!r}: expected a callable building a str key")

        def wrap(func: F) -> F:
            name = f"{func.__module__}.{func.__qualname__}"

            def key_of(*args: Any, **kwargs: Any) -> str:
                if key is not None:
                    return key(*args, **kwargs)
                try:
                    return name + ":" + json.dumps([args, kwargs], sort_keys=True)
                except TypeError as exc:
                    raise TypeError(
                        f"cannot build a cache key for {name}{args!r}: arguments "
                        f"must be JSON-serialisable ({exc}); pass key=... instead"
                    ) from exc

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
