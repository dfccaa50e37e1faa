"""What every cache in :mod:`labkit.cache` shares: stats, argument checks, JSON."""

from __future__ import annotations

import json
import random
import threading
from array import array
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
import redis
from redis.commands.core import Script

__all__ = [
    "JSON_DECODER",
    "CacheStats",
    "decode",
    "encode",
    "fast_loads",
    "load_script",
    "ttl_ms",
]

#: Prefix of every key a labkit cache writes.
PREFIX = "lab:cache"


_OUTCOMES = ("hit", "miss", "early")
_CODE = {name: i for i, name in enumerate(_OUTCOMES)}


class CacheStats:
    """Counters and latency samples of one cache object.

    Attributes:
        hits: Reads answered from Redis (or, for the client-side cache, locally).
        misses: Reads that found nothing and had to load (or wait for a loader).
        loads: Calls made to the loader, i.e. to the origin.
        load_errors: Loader calls that raised (nothing was cached for them).
        waits: Misses that waited for another caller's load (single-flight).
        early_recomputes: Hits that reloaded before expiry (XFetch).
        max_samples: How many of the latest reads keep their latency.
        lock: Guards the counters; caches update them under it.
        codes, seconds, written, growing: The sample ring buffer, public only so
            the hit path can append inline; read :attr:`samples` instead.

    Latency samples live in two flat ``array``s used as a ring buffer, not in a
    list of tuples: a tuple per read would keep the garbage collector busy on
    the hit path, which the benchmark compares with a bare ``GET``.
    """

    def __init__(self, max_samples: int = 100_000) -> None:
        if not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples={max_samples!r}: expected an int >= 1")
        self.max_samples = max_samples
        self.lock = threading.Lock()
        self.hits = self.misses = self.loads = self.load_errors = 0
        self.waits = self.early_recomputes = 0
        # The ring buffer: outcome codes (index into _OUTCOMES) and seconds,
        # appended while growing, then overwritten at written % max_samples.
        self.codes = array("b")
        self.seconds = array("d")
        self.written = 0
        self.growing = True

    @property
    def hit_ratio(self) -> float:
        """``hits / (hits + misses)``; 0.0 before the first read."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def add_sample(self, code: int, seconds: float) -> None:
        """Keep one latency sample (call with :attr:`lock` held)."""
        if self.growing:
            self.codes.append(code)
            self.seconds.append(seconds)
            self.growing = len(self.seconds) < self.max_samples
        else:
            i = self.written % self.max_samples
            self.codes[i] = code
            self.seconds[i] = seconds
        self.written += 1

    def record(self, outcome: str, seconds: float) -> None:
        """Count one read (``"hit"``, ``"miss"`` or ``"early"``) and keep its time."""
        with self.lock:
            if outcome == "miss":
                self.misses += 1
            else:
                self.hits += 1
                if outcome == "early":
                    self.early_recomputes += 1
            self.add_sample(_CODE[outcome], seconds)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (``loads``, ``load_errors``, ``waits``)."""
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    @property
    def samples(self) -> list[tuple[str, float]]:
        """The kept reads, oldest first, as ``(outcome, seconds)``."""
        with self.lock:
            codes, secs = list(self.codes), list(self.seconds)
            start = self.written % self.max_samples if self.written > len(secs) else 0
        order = list(range(start, len(secs))) + list(range(start))
        return [(_OUTCOMES[codes[i]], secs[i]) for i in order]

    def latencies(self, outcome: str | None = None) -> np.ndarray:
        """Durations in seconds of the kept samples, optionally of one outcome."""
        return np.array([s for o, s in self.samples if outcome in (None, o)])

    def records(self) -> list[dict[str, Any]]:
        """The samples as rows (``outcome``, ``ms``), ready for ``pd.DataFrame``."""
        return [{"outcome": o, "ms": s * 1000} for o, s in self.samples]

    def reset(self) -> None:
        """Zero every counter and drop the samples."""
        with self.lock:
            self.hits = self.misses = self.loads = self.load_errors = 0
            self.waits = self.early_recomputes = 0
            self.codes, self.seconds, self.written = array("b"), array("d"), 0
            self.growing = True

    def __repr__(self) -> str:
        return (
            f"CacheStats(hits={self.hits}, misses={self.misses}, loads={self.loads}, "
            f"load_errors={self.load_errors}, waits={self.waits}, "
            f"early_recomputes={self.early_recomputes})"
        )

    def __str__(self) -> str:
        return (
            f"hits={self.hits} misses={self.misses} loads={self.loads} "
            f"load_errors={self.load_errors} waits={self.waits} "
            f"early_recomputes={self.early_recomputes}"
        )


def check_client(client: Any) -> None:
    """Raise TypeError unless ``client`` is a redis-py client."""
    if not isinstance(client, redis.Redis | redis.RedisCluster):
        raise TypeError(
            f"client={client!r}: expected a redis.Redis or redis.RedisCluster "
            "(e.g. labkit.connect())"
        )


def check_namespace(namespace: Any) -> str:
    """Return ``namespace`` if it is a non-empty str without braces or spaces."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace={namespace!r}: expected a str such as 'users'")
    if not namespace or any(c in namespace for c in "{} "):
        raise ValueError(
            f"namespace={namespace!r}: must be a non-empty str without spaces, "
            "'{' or '}' (braces are hash tags, reserved for the cache's own keys)"
        )
    return namespace


def check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float seconds, > 0 (or >= 0 with ``allow_zero``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise TypeError(f"{name}={value!r}: expected a number of seconds")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r}: must be {bound} seconds")
    return float(value)


def check_jitter(jitter: Any) -> float:
    """Return ``jitter`` if it is a fraction in [0, 1]."""
    if not isinstance(jitter, int | float) or isinstance(jitter, bool):
        raise TypeError(f"jitter={jitter!r}: expected a fraction from 0 to 1")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter={jitter!r}: must be from 0 to 1 (0.1 = up to +10%)")
    return float(jitter)


def check_key(name: str, key: Any) -> str:
    """Return ``key`` as str (str or int accepted)."""
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise TypeError(f"{name}={key!r}: expected a str (or int) cache key")
    return str(key)


def check_loader(loader: Any) -> Callable[[], Any]:
    """Return ``loader`` if it can be called."""
    if not callable(loader):
        raise TypeError(
            f"loader={loader!r}: expected a callable taking no arguments "
            "(e.g. lambda: db.get_user(1))"
        )
    return loader


def ttl_ms(ttl: float, jitter: float, rng: random.Random) -> int:
    """TTL in milliseconds, stretched by up to ``jitter`` (never shortened)."""
    stretch = 1.0 + rng.uniform(0.0, jitter) if jitter else 1.0
    return max(1, round(ttl * stretch * 1000))


def encode(key: str, value: Any) -> str:
    """``value`` as compact JSON; TypeError naming the key if it cannot be."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot cache key {key!r}: the loader returned a "
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


def load_script(client: Any, name: str) -> Script:
    """Register ``labkit/lua/<name>`` with ``client`` and return the Script."""
    source = resources.files("labkit").joinpath("lua", name).read_text()
    return client.register_script(source)
