"""What every cache in :mod:`labkit.cache` shares: stats, argument checks, JSON."""

from __future__ import annotations

import json
import random
import threading
from array import array
from typing import TYPE_CHECKING, Any, NoReturn

import redis

from labkit.core.args import check_count, check_name, check_tag
from labkit.errors import WrongTypeError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "JSON_DECODER",
    "CacheStats",
    "check_namespace",
    "decode",
    "encode",
    "fast_loads",
    "raise_wrong_type",
    "ttl_ms",
]

#: Prefix of every key a labkit cache writes.
PREFIX = "lab:cache"
#: Upper bound of ``max_samples`` (two flat arrays: about 9 bytes a sample).
MAX_SAMPLES = 10_000_000


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
        dropped: Loaded values not stored because a write (``invalidate``,
            ``set``) cancelled the load's lease meanwhile: they were stale.
        store_errors: Stores the server refused for lack of memory
            (``maxmemory`` with ``noeviction``); the value was still returned.
        max_samples: How many of the latest reads keep their latency.
        lock: Guards the counters; caches update them under it.
        codes, seconds, written, growing: The sample ring buffer, public only so
            the hit path can append inline; read :attr:`samples` instead.

    Latency samples live in two flat ``array``s used as a ring buffer, not in a
    list of tuples: a tuple per read would keep the garbage collector busy on
    the hit path, which the benchmark compares with a bare ``GET``.
    """

    def __init__(self, max_samples: int = 100_000) -> None:
        self.max_samples = check_count("max_samples", max_samples, max=MAX_SAMPLES)
        self.lock = threading.Lock()
        self.hits = self.misses = self.loads = self.load_errors = 0
        self.waits = self.early_recomputes = self.dropped = self.store_errors = 0
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
        """Add ``n`` to the counter ``name`` (``loads``, ``waits``, ``dropped``...)."""
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
        """Durations in seconds of the kept samples, optionally of one outcome.

        Needs numpy (the ``lab`` extra); the library itself does not.
        """
        import numpy as np  # only here: an application need not install numpy

        return np.array([s for o, s in self.samples if outcome in (None, o)])

    def records(self) -> list[dict[str, Any]]:
        """The samples as rows (``outcome``, ``ms``), ready for ``pd.DataFrame``."""
        return [{"outcome": o, "ms": s * 1000} for o, s in self.samples]

    def reset(self) -> None:
        """Zero every counter and drop the samples."""
        with self.lock:
            self.hits = self.misses = self.loads = self.load_errors = 0
            self.waits = self.early_recomputes = self.dropped = self.store_errors = 0
            self.codes, self.seconds, self.written = array("b"), array("d"), 0
            self.growing = True

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


def check_namespace(namespace: Any) -> str:
    """A namespace: a non-empty str without braces or line breaks.

    It goes inside the keys' hash tag together with the caller's key, so the
    same key in two namespaces lands in two different cluster slots.
    """
    return check_tag("namespace", check_name("namespace", namespace, max_len=200))


def raise_wrong_type(client: Any, key: str, expected: str, exc: Exception) -> NoReturn:
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
