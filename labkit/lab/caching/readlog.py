"""Lab: per-read latency samples, the opt-in hook a cache reports reads to.

The library's caches count hits and misses but keep no per-read samples (a
sample per read would cost every hit a clock read and a write under a lock).
The lab passes a :class:`ReadLog` as ``on_read=`` where it plots latencies::

    log = ReadLog()
    cache = Cache(r, "users", ttl=60, on_read=log)
    ...
    log.latencies("hit")  # numpy array of seconds
"""

from __future__ import annotations

import threading
from array import array
from typing import Any

import numpy as np

from labkit.core.args import check_count

__all__ = ["MAX_SAMPLES", "ReadLog"]

#: Upper bound of ``max_samples`` (two flat arrays: about 9 bytes a sample).
MAX_SAMPLES = 10_000_000

_OUTCOMES = ("hit", "miss", "early")
_CODE = {name: i for i, name in enumerate(_OUTCOMES)}


class ReadLog:
    """The latest ``max_samples`` reads of a cache, as ``(outcome, seconds)``.

    Call it as ``log(outcome, seconds)`` (what a cache's ``on_read`` hook
    does). Samples live in two flat ``array``s used as a ring buffer, not in a
    list of tuples, so the garbage collector has nothing to track.
    """

    def __init__(self, max_samples: int = 100_000) -> None:
        self.max_samples = check_count("max_samples", max_samples, max=MAX_SAMPLES)
        self._lock = threading.Lock()
        self.reset()

    def __call__(self, outcome: str, seconds: float) -> None:
        code = _CODE[outcome]
        with self._lock:
            if len(self._seconds) < self.max_samples:
                self._codes.append(code)
                self._seconds.append(seconds)
            else:
                i = self._written % self.max_samples
                self._codes[i] = code
                self._seconds[i] = seconds
            self._written += 1

    def __len__(self) -> int:
        return len(self._seconds)

    @property
    def samples(self) -> list[tuple[str, float]]:
        """The kept reads, oldest first, as ``(outcome, seconds)``."""
        with self._lock:
            codes, secs = list(self._codes), list(self._seconds)
            start = self._written % self.max_samples if self._written > len(secs) else 0
        order = list(range(start, len(secs))) + list(range(start))
        return [(_OUTCOMES[codes[i]], secs[i]) for i in order]

    def latencies(self, outcome: str | None = None) -> np.ndarray:
        """Durations in seconds of the kept samples, optionally of one outcome."""
        return np.array([s for o, s in self.samples if outcome in (None, o)])

    def records(self) -> list[dict[str, Any]]:
        """The samples as rows (``outcome``, ``ms``), ready for ``pd.DataFrame``."""
        return [{"outcome": o, "ms": s * 1000} for o, s in self.samples]

    def reset(self) -> None:
        """Drop every sample."""
        with self._lock:
            self._codes = array("b")
            self._seconds = array("d")
            self._written = 0

    def __repr__(self) -> str:
        return f"ReadLog({len(self)} of max {self.max_samples} samples)"
