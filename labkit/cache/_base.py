"""What every cache in :mod:`labkit.cache` shares: stats, argument checks, JSON."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import redis

from labkit.core.args import check_callable, check_name, check_tag
from labkit.errors import WrongTypeError

__all__ = [
    "JSON_DECODER",
    "PREFIX",
    "CacheStats",
    "ReadHook",
    "check_namespace",
    "check_on_read",
    "check_prefix",
    "decode",
    "encode",
    "fast_loads",
    "raise_wrong_type",
    "ttl_ms",
]

#: Default prefix of every key a labkit cache writes (``prefix=`` changes it).
PREFIX = "labkit:cache"
#: Upper bound of ``ClientSideCache(max_entries=...)``.
MAX_ENTRIES = 10_000_000

#: ``on_read(outcome, seconds)``: called after every read with ``"hit"``,
#: ``"miss"`` or ``"early"`` (an XFetch early recompute) and its duration.
ReadHook = Callable[[str, float], None]


class CacheStats:
    """Counters of one cache object (no per-read samples: pass ``on_read=``
    to the cache for those, e.g. the lab's ``labkit.lab.caching.ReadLog``).

    Attributes:
        hits: Reads answered from Redis (or, for the client-side cache, locally).
        misses: Reads that found nothing and had to load (or wait for a loader).
        loads: Calls made to the loader, i.e. to the origin.
        load_errors: Loader calls that raised (nothing was cached for them).
        waits: Misses that waited for another caller's load (single-flight).
        early_recomputes: Hits that reloaded before expiry (XFetch).
        dropped: Loaded values not stored because a write (``invalidate``,
            ``set``) cancelled the load's lease meanwhile: they were stale.
        store_errors: Stores the server refused for lack of memory
            (``maxmemory`` with ``noeviction``); the value was still returned.
        lock: Guards the counters; caches update them under it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits = self.misses = self.loads = self.load_errors = 0
        self.waits = self.early_recomputes = self.dropped = self.store_errors = 0

    @property
    def hit_ratio(self) -> float:
        """``hits / (hits + misses)``; 0.0 before the first read."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def record(self, outcome: str) -> None:
        """Count one read: ``"hit"``, ``"miss"`` or ``"early"``."""
        with self.lock:
            if outcome == "miss":
                self.misses += 1
            else:
                self.hits += 1
                if outcome == "early":
                    self.early_recomputes += 1

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (``loads``, ``waits``, ``dropped``...)."""
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def reset(self) -> None:
        """Zero every counter."""
        with self.lock:
            self.hits = self.misses = self.loads = self.load_errors = 0
            self.waits = self.early_recomputes = self.dropped = self.store_errors = 0

    def counters(self) -> dict[str, int]:
        """Every counter by name (the non-zero ones are what ``str()`` shows)."""
        names = (
            "hits", "misses", "loads", "load_errors", "waits",
            "early_recomputes", "dropped", "store_errors",
        )  # fmt: skip
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        pairs = ", ".join(f"{k}={v}" for k, v in self.counters().items())
        return f"CacheStats({pairs})"

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.counters().items() if v)


def check_on_read(on_read: ReadHook | None) -> ReadHook | None:
    """``on_read``: None, or a callable taking ``(outcome, seconds)``."""
    if on_read is None:
        return None
    return check_callable("on_read", on_read, signature="(outcome, seconds)")


def check_prefix(prefix: str) -> str:
    """A key prefix: a non-empty str without braces or line breaks (the cache
    adds the ``:{...}`` hash tag after it)."""
    return check_tag("prefix", check_name("prefix", prefix, max_len=200))


def check_namespace(namespace: Any) -> str:
    """A namespace: a non-empty str without braces or line breaks.

    It goes inside the keys' hash tag together with the caller's key, so the
    same key in two namespaces lands in two different cluster slots.
    """
    return check_tag("namespace", check_name("namespace", namespace, max_len=200))


def raise_wrong_type(
    client: redis.Redis | redis.RedisCluster, key: str, expected: str, exc: Exception
) -> NoReturn:
    """Raise :class:`WrongTypeError` for ``key`` if it holds another type.

    Called when Redis answered ``WRONGTYPE`` (or a script refused the key):
    asks ``TYPE`` to name what is there. Anything else is re-raised unchanged.
    """
    if isinstance(exc, redis.ResponseError) and "WRONGTYPE" not in str(exc):
        raise exc
    found = client.type(key)
    found = found.decode() if isinstance(found, bytes) else str(found)
    raise wrong_type(key, expected=expected, found=found) from exc


def wrong_type(key: str, *, expected: str, found: str) -> WrongTypeError:
    """The cache's :class:`WrongTypeError`: ``key`` holds ``found``, not the cache's."""
    return WrongTypeError(
        f"key {key!r} holds a {found}, but the cache keeps a {expected} there: "
        "another program uses this name. Nothing was written; choose another "
        "namespace, or delete the key if it is stale.",
        key=key,
        expected=expected,
        found=found,
    )


def ttl_ms(ttl: float, jitter: float, rng: random.Random) -> int:
    """TTL in milliseconds, stretched by up to ``jitter`` (never shortened)."""
    stretch = 1.0 + rng.uniform(0.0, jitter) if jitter else 1.0
    return max(1, round(ttl * stretch * 1000))


def encode(key: str, value: Any, *, source: str = "the loader returned") -> str:
    """``value`` as compact JSON; TypeError naming the key if it cannot be.

    ``source`` says where the value came from, for the message: the loader,
    or ``set()``'s argument.
    """
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot cache key {key!r}: {source} a "
            f"{type(value).__name__} that is not JSON-serialisable ({exc}); "
            "allowed: dict, list, str, int, float (finite), bool, None"
        ) from exc


try:  # orjson parses faster than json, which shows on the hit path (bench_cache)
    from orjson import loads as fast_loads
except ImportError:  # pragma: no cover - orjson is optional
    fast_loads = json.loads  # type: ignore[assignment]

#: The function that decodes cached values on the hit path, by name
#: (``"orjson.loads"``, or ``"json.loads"`` without orjson).
JSON_DECODER = f"{fast_loads.__module__}.loads"


def decode(raw: str | bytes) -> Any:
    """The value stored by :func:`encode` (orjson when installed, else json).

    orjson refuses integers beyond 64 bits, which :mod:`json` writes; those
    fall back to :func:`json.loads`.
    """
    try:
        return fast_loads(raw)
    except ValueError:
        return json.loads(raw)
