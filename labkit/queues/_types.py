"""Small types and argument checks shared by the queue modules."""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["JobStatus", "QueueCounts"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r}: must be an int >= 1")
    if value < 1:
        raise ValueError(f"{name}={value!r}: must be an int >= 1")
    return value


def _seconds(name: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}={value!r}: must be a number of seconds")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(
            f"{name}={value!r}: must be a finite number of seconds >= {minimum:g}"
        )
    return float(value)


class QueueCounts(NamedTuple):
    """How many jobs a queue holds in each state, and what it has done so far.

    Attributes:
        waiting: In the stream, not yet delivered to a worker.
        running: Delivered to a worker and not yet acknowledged (XPENDING); a
            dead worker's jobs stay here until another worker recovers them.
        delayed: Waiting for their due time (new delayed jobs and retries).
        enqueued, completed, retried, dead, recovered: Running totals:
            jobs enqueued, jobs acknowledged as done (each once), failed
            attempts that were rescheduled, jobs moved to the dead-letter
            stream, and deliveries taken over from silent workers (XAUTOCLAIM).
    """

    waiting: int
    running: int
    delayed: int
    enqueued: int
    completed: int
    retried: int
    dead: int
    recovered: int


class JobStatus(NamedTuple):
    """One job's record.

    Attributes:
        id: The job id returned by :meth:`JobQueue.enqueue`.
        state: ``queued``, ``delayed``, ``running``, ``retrying``, ``done`` or
            ``dead``.
        attempts: Attempts started so far (a crash mid-job counts as one).
        max_attempts: Attempts allowed before the job is dead-lettered.
        error: The last error, ``""`` if none.
    """

    id: str
    state: str
    attempts: int
    max_attempts: int
    error: str
