"""Small result types of the queue modules."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["JobStatus", "QueueCounts"]


class QueueCounts(NamedTuple):
    """How many jobs a queue holds in each state, and what it has done so far.

    Attributes:
        waiting: In the stream, not yet delivered to a worker.
        running: Delivered to a worker and not yet acknowledged (XPENDING); a
            dead worker's jobs stay here until another worker recovers them.
        delayed: Waiting for their due time (new delayed jobs and retries).
        enqueued, completed, retried, dead, recovered, lost: Running totals:
            jobs enqueued, jobs acknowledged as done (each once), failed
            attempts that were rescheduled, jobs moved to the dead-letter
            stream, deliveries taken over from silent workers (XAUTOCLAIM),
            and pending entries found deleted from the stream (trimmed by
            someone else: those jobs cannot run).
    """

    waiting: int
    running: int
    delayed: int
    enqueued: int
    completed: int
    retried: int
    dead: int
    recovered: int
    lost: int


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
