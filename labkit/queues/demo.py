"""Stand-in handlers for the lab's worker processes (importable by path).

``python -m labkit.queues worker --handler labkit.queues.demo:record`` runs
one of these in a separate process. They do no real work: they record that
they ran, so that tests and notebooks can count runs, duplicates and losses.
"""

from __future__ import annotations

import time
from typing import Any

from labkit.queues._queue import Job

__all__ = ["noop", "record", "runs_key"]


def runs_key(queue_base: str) -> str:
    """Hash of job id -> handler runs that :func:`record` writes for a queue."""
    return f"{queue_base}:demo:runs"


def record(job: Job) -> None:
    """Count this run, then sleep ``payload["sleep"]`` seconds (default 0).

    The run is counted *before* the sleep, as a real side effect would be, so
    a worker killed mid-job leaves a run that its retry will repeat.
    """
    job.queue.client.hincrby(runs_key(job.queue.base), job.id, 1)
    if isinstance(job.payload, dict):
        time.sleep(float(job.payload.get("sleep", 0)))


def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing: measures the queue's own cost per job (labkit and rq)."""
