"""Lab: stand-in handlers and experiments (notebook 06, tests, benchmark).

``python -m labkit.lab.queues worker --handler labkit.lab.queues.demo:record`` runs
one of these in a separate process. They do no real work: they record that
they ran, so that tests and notebooks can count runs, duplicates and losses.
:func:`crash_run` SIGKILLs a worker process mid-batch and counts;
:func:`try_queue` runs failing jobs with retries for the notebook's widget.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from labkit.lab.queues._procs import WorkerProcesses
from labkit.queues import (
    GROUP,
    Handler,
    Job,
    JobQueue,
    QueueCounts,
    RunResult,
    run_threads,
)

__all__ = [
    "CrashRun",
    "crash_run",
    "flaky_sleep",
    "noop",
    "record",
    "runs_key",
    "try_queue",
]


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


@dataclass(frozen=True)
class CrashRun:
    """One run of :func:`crash_run`.

    Attributes:
        jobs: Jobs enqueued.
        held: Jobs the killed worker held unacknowledged at the kill.
        recovered: Jobs taken over from dead workers (XAUTOCLAIM).
        lost: Jobs that never ran.
        duplicates: Extra runs (jobs that ran more than once).
        times, completed: The completion curve (seconds, jobs completed).
        killed_at: Seconds from the start to the kill (None if none).
    """

    jobs: int
    held: int
    recovered: int
    lost: int
    duplicates: int
    times: list[float]
    completed: list[int]
    killed_at: float | None

    def rates(self) -> tuple[float, float]:
        """Jobs completed per second before and after the kill.

        "After" ends when the killed worker's jobs start coming back (the
        curve's last 5% is left out), so it measures the survivors alone.
        """
        if self.killed_at is None:
            raise ValueError("no worker was killed in this run")
        k = next(i for i, t in enumerate(self.times) if t >= self.killed_at)
        end = next(
            i for i, c in enumerate(self.completed) if c >= 0.95 * self.completed[-1]
        )
        before = self.completed[k] / self.times[k]
        span = self.times[end] - self.times[k]
        after = (self.completed[end] - self.completed[k]) / span if span else 0.0
        return before, after


def crash_run(
    client: redis.Redis,
    url: str,
    name: str,
    *,
    jobs: int = 600,
    workers: int = 3,
    job_seconds: float = 0.003,
    kill_after: float = 0.25,
    timeout: float = 60.0,
) -> CrashRun:
    """SIGKILL one of ``workers`` worker processes mid-batch and count.

    Worker processes (``python -m labkit.lab.queues worker``, handler
    :func:`record`, visibility timeout 1 s) work on queue ``name`` of the
    server at ``url``. Once ``kill_after`` of the jobs are done and worker 0
    holds at least 3 unacknowledged jobs, it is SIGKILLed; the run ends when
    every job is completed (or after ``timeout`` seconds).
    """
    q = JobQueue(client, name, visibility_timeout=1)
    curve: list[tuple[float, int]] = [(0.0, 0)]
    killed_at, held = None, 0
    with WorkerProcesses(url, name, workers, options=["--visibility", "1"]) as procs:
        start = time.perf_counter()
        while len(_pending(q)) < workers and time.perf_counter() - start < timeout:
            time.sleep(0.02)  # until every process has joined the group
        q.enqueue_many([{"sleep": job_seconds}] * jobs)
        start = time.perf_counter()
        while q.counts().completed < jobs and time.perf_counter() - start < timeout:
            time.sleep(0.01)
            curve.append((time.perf_counter() - start, q.counts().completed))
            due = killed_at is None and curve[-1][1] >= jobs * kill_after
            if due and _pending(q).get("proc-0", 0) >= 3:
                procs.kill(0)  # mid-batch: it holds >= 3 unacked jobs
                killed_at, held = curve[-1][0], _pending(q)["proc-0"]
    got: Any = client.hgetall(runs_key(q.base))
    runs = [int(v) for v in got.values()]
    times, completed = (list(v) for v in zip(*curve, strict=True))
    return CrashRun(
        jobs,
        held,
        q.counts().recovered,
        jobs - len(runs),
        sum(runs) - len(runs),
        times,
        completed,
        killed_at,
    )


def _pending(q: JobQueue) -> dict[str, int]:
    """Unacknowledged jobs per consumer of the queue's group."""
    got: Any = q.client.xinfo_consumers(q.stream, GROUP)
    return {c["name"]: c["pending"] for c in got}


def flaky_sleep(fail_rate: float, job_seconds: float) -> Handler:
    """A handler that sleeps, then fails with probability ``fail_rate``.

    The failure is decided by a RNG seeded with the payload and the attempt,
    so a run is reproducible whatever the order the workers take jobs in.
    """

    def handler(job: Job) -> None:
        time.sleep(job_seconds)
        if random.Random(f"{job.payload}-{job.attempt}").random() < fail_rate:
            raise RuntimeError("unlucky")

    return handler


def try_queue(
    client: redis.Redis,
    name: str,
    *,
    workers: int = 2,
    fail_rate: float = 0.2,
    job_ms: int = 10,
    jobs: int = 50,
) -> tuple[RunResult, QueueCounts]:
    """Run ``jobs`` :func:`flaky_sleep` jobs (3 attempts each) with threads."""
    q = JobQueue(client, name, max_attempts=3, backoff=0.02)
    q.enqueue_many(list(range(jobs)))
    res = run_threads(q, flaky_sleep(fail_rate, job_ms / 1000), workers)
    return res, q.counts()
