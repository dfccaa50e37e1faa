"""Lab: stand-in handlers and worker-process experiments (notebook 08, tests).

``python -m labkit.lab.queues worker --handler labkit.lab.queues.demo:record`` runs
one of these in a separate process. They do no real work: they record that
they ran, so that tests and notebooks can count runs, duplicates and losses.
:func:`crash_run` SIGKILLs a worker process mid-batch and counts;
:func:`poison_run` feeds workers a job that kills them; :func:`cpu_rates`
measures CPU-bound jobs on 1..n processes; :func:`try_queue` runs failing
jobs with retries for the notebook's widget.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from labkit.core.args import DAY, check_count, check_number, check_seconds
from labkit.lab.queues._procs import WorkerProcesses
from labkit.lab.queues.threads import RunResult, run_threads
from labkit.queues import GROUP, Handler, Job, JobQueue, QueueCounts

__all__ = [
    "CrashRun",
    "PoisonRun",
    "cpu_rates",
    "crash_run",
    "flaky_sleep",
    "noop",
    "poison",
    "poison_run",
    "record",
    "runs_key",
    "spin",
    "starts_key",
    "try_queue",
]


def runs_key(queue_base: str) -> str:
    """Hash of job id -> handler runs that :func:`record` writes for a queue."""
    return f"{queue_base}:demo:runs"


def starts_key(queue_base: str) -> str:
    """Hash of job id -> wall-clock ms of its latest start (:func:`record`)."""
    return f"{queue_base}:demo:starts"


def record(job: Job) -> None:
    """Count this run and note its start, then sleep ``payload["sleep"]`` s.

    The run is counted *before* the sleep, as a real side effect would be, so
    a worker killed mid-job leaves a run that its retry will repeat.
    """
    pipe = job.queue.client.pipeline(transaction=False)
    pipe.hincrby(runs_key(job.queue.base), job.id, 1)
    pipe.hset(starts_key(job.queue.base), job.id, round(time.time() * 1000))
    pipe.execute()
    if isinstance(job.payload, dict):
        time.sleep(float(job.payload.get("sleep", 0)))


def poison(job: Job) -> None:
    """:func:`record`, except that the payload ``"poison"`` kills the process.

    SIGKILL, as a segfault or the kernel's OOM killer would: the worker
    cannot fail the job, so the job stays pending until another worker takes
    it over, and kills that one too.
    """
    if job.payload == "poison":
        os.kill(os.getpid(), signal.SIGKILL)
    record(job)


def spin(job: Job) -> None:
    """Burn ``payload["ms"]`` milliseconds of CPU (a CPU-bound job)."""
    end = time.thread_time() + float(job.payload["ms"]) / 1000
    while time.thread_time() < end:
        pass


def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing: measures the queue's own cost per job (labkit and rq)."""


@dataclass(frozen=True)
class CrashRun:
    """One run of :func:`crash_run`.

    Attributes:
        jobs: Jobs enqueued.
        held: Jobs the killed worker held unacknowledged at the kill (read
            while it was frozen, just before the SIGKILL).
        recovered: Jobs taken over from dead workers (XAUTOCLAIM).
        lost: Jobs that never ran.
        duplicates: Extra runs (jobs that ran more than once).
        extra_attempts: Attempts charged beyond one per job (each job here
            succeeds at once, so only a crash charges a second attempt).
        returned_after: For each held job, seconds from the kill to its next
            start (wall clock; the kill counts from the freeze before it,
            after which the worker did nothing).
        idle_at_kill: For each held job (same order), seconds its entry had
            been idle when the worker was frozen (XPENDING's time since
            delivery, reset when its job started).
        times, completed: The completion curve (seconds, jobs completed).
        killed_at: Seconds from the start to the kill (None if none).
        visibility: The queue's visibility timeout, in seconds.
    """

    jobs: int
    held: int
    recovered: int
    lost: int
    duplicates: int
    extra_attempts: int
    returned_after: list[float]
    idle_at_kill: list[float]
    times: list[float]
    completed: list[int]
    killed_at: float | None
    visibility: float

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
    visibility: float = 1.0,
    handler: str = "labkit.lab.queues.demo:record",
    path: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
) -> CrashRun:
    """SIGKILL one of ``workers`` worker processes mid-batch and count.

    Worker processes (``python -m labkit.lab.queues worker``) work on queue
    ``name`` of the server at ``url`` (``client`` talks to the same server).
    Once ``kill_after`` of the jobs are done, worker 0 is frozen (SIGSTOP),
    so that the jobs it holds cannot change while they are read (XPENDING);
    if it holds at least 3 unacknowledged jobs it is SIGKILLed, otherwise
    thawed (SIGCONT) and tried again 10 ms later. The run ends when every job
    is completed (or after ``timeout`` seconds).

    Args:
        handler: ``"module:function"`` run by the workers; it must call
            :func:`record` (directly or not) for runs to be counted.
        path: A directory to put on the workers' ``PYTHONPATH``, where the
            handler's module is (see :class:`WorkerProcesses`).

    Raises:
        WorkerProcessError: A worker process failed (say, the URL did not
            answer, or the handler could not be imported): its error is in
            the message, within seconds.
        TimeoutError: The jobs were not all done within ``timeout`` seconds.
    """
    check_count("jobs", jobs, max=100_000)
    check_count("workers", workers, max=16)
    check_seconds("job_seconds", job_seconds, max=60, min_open=False)
    check_number("kill_after", kill_after, min=0, max=1, min_open=True)
    check_seconds("timeout", timeout, max=DAY)
    q = JobQueue(client, name, visibility_timeout=visibility)
    curve: list[tuple[float, int]] = [(0.0, 0)]
    killed_at, kill_ms = None, 0
    held: list[tuple[str, float]] = []  # (job id, idle seconds) at the kill
    opts = ["--visibility", str(visibility)]
    with WorkerProcesses(
        url, name, workers, handler=handler, path=path, options=opts
    ) as procs:
        procs.wait_ready(q, timeout=min(timeout, 30))
        q.enqueue_many([{"sleep": job_seconds}] * jobs)
        start = time.perf_counter()
        while q.counts().completed < jobs and time.perf_counter() - start < timeout:
            time.sleep(0.01)
            procs.check()
            curve.append((time.perf_counter() - start, q.counts().completed))
            if killed_at is None and curve[-1][1] >= jobs * kill_after:
                procs.pause(0)  # SIGSTOP: what it holds can no longer change
                frozen_ms = round(time.time() * 1000)
                in_hand = _held_jobs(q, "proc-0")
                if len(in_hand) >= 3:  # mid-batch: it holds >= 3 unacked jobs
                    procs.kill(0)  # SIGKILL
                    held, kill_ms, killed_at = in_hand, frozen_ms, curve[-1][0]
                else:
                    procs.resume(0)  # SIGCONT: try again 10 ms later
        if q.counts().completed < jobs:
            # Counting now would call "lost" what simply has not run yet.
            raise TimeoutError(f"{name}: jobs not all done within {timeout:g} s")
    got: Any = client.hgetall(runs_key(q.base))
    runs = [int(v) for v in got.values()]
    held_ids = [job_id for job_id, _ in held]
    starts: Any = client.hmget(starts_key(q.base), held_ids) if held_ids else []
    returned = [(int(s) - kill_ms) / 1000 if s else -1.0 for s in starts]
    attempts = _attempts(q, list(got))
    times, completed = (list(v) for v in zip(*curve, strict=True))
    return CrashRun(
        jobs,
        len(held_ids),
        q.counts().recovered,
        jobs - len(runs),
        sum(runs) - len(runs),
        attempts - len(runs),
        returned,
        [idle for _, idle in held],
        times,
        completed,
        killed_at,
        visibility,
    )


def _held_jobs(q: JobQueue, consumer: str) -> list[tuple[str, float]]:
    """(job id, idle seconds) of the entries ``consumer`` holds (XPENDING, XRANGE)."""
    got: Any = q.client.xpending_range(q.stream, GROUP, "-", "+", 1000, consumer)
    pipe = q.client.pipeline(transaction=False)
    for p in got:
        pipe.xrange(q.stream, p["message_id"], p["message_id"])
    return [
        (entries[0][1]["job"], p["time_since_delivered"] / 1000)
        for p, entries in zip(got, pipe.execute(), strict=True)
        if entries
    ]


def _attempts(q: JobQueue, ids: Sequence[str]) -> int:
    pipe = q.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(q.job_key(job_id), "attempts")
    return sum(int(a or 0) for a in pipe.execute())


@dataclass(frozen=True)
class PoisonRun:
    """One run of :func:`poison_run`.

    Attributes:
        deliveries: The poison entry's delivery count (XPENDING), each time it
            changed while it was pending.
        workers_killed: Worker processes the poison job killed.
        dead_letter: The poison job's dead letter (None if it never got one).
        completed: Good jobs completed.
    """

    deliveries: list[int]
    workers_killed: int
    dead_letter: dict[str, Any] | None
    completed: int


def poison_run(
    client: redis.Redis,
    url: str,
    name: str,
    *,
    good: int = 20,
    max_attempts: int = 2,
    visibility: float = 0.5,
    timeout: float = 60.0,
) -> PoisonRun:
    """Enqueue ``good`` jobs and one that kills any worker running it (:func:`poison`).

    ``max_attempts + 1`` worker processes start; each one the poison job kills
    leaves it pending, another takes it over after ``visibility`` seconds,
    until its attempts are used up and a worker dead-letters it unrun.
    """
    check_count("good", good, max=10_000)
    check_count("max_attempts", max_attempts, max=10)
    check_seconds("timeout", timeout, max=DAY)
    q = JobQueue(client, name, max_attempts=max_attempts, visibility_timeout=visibility)
    handler = "labkit.lab.queues.demo:poison"
    opts = ["--visibility", str(visibility), "--batch", "1"]
    n = max_attempts + 1
    deliveries: list[int] = []
    with WorkerProcesses(url, name, n, handler=handler, options=opts) as procs:
        procs.wait_ready(q, timeout=min(timeout, 30))
        job_id = q.enqueue("poison")
        q.enqueue_many([{"n": i} for i in range(good)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got: Any = client.xpending_range(q.stream, GROUP, "-", "+", 100)
            for p in got:
                count = p["times_delivered"]
                if _job_of(q, p["message_id"]) == job_id and (
                    not deliveries or deliveries[-1] != count
                ):
                    deliveries.append(count)
            c = q.counts()
            if c.dead >= 1 and c.completed >= good:
                break
            time.sleep(0.02)
        killed = sum(p.poll() == -signal.SIGKILL for p in procs.procs)
    dead = [d for d in q.dead_letters() if d["job"] == job_id]
    return PoisonRun(
        deliveries, killed, dead[0] if dead else None, q.counts().completed
    )


def _job_of(q: JobQueue, entry_id: str) -> str | None:
    got: Any = q.client.xrange(q.stream, entry_id, entry_id)
    return got[0][1].get("job") if got else None


def cpu_rates(
    client: redis.Redis,
    url: str,
    name: str,
    workers: Sequence[int],
    *,
    jobs: int = 60,
    job_ms: float = 20.0,
    timeout: float = 120.0,
) -> dict[int, float]:
    """Jobs per second of CPU-bound jobs (:func:`spin`) on n worker processes.

    For each n, n processes start and join the group before the clock
    starts; the rate is ``jobs`` over the time from the enqueue until the
    last job is acknowledged.
    """
    check_count("jobs", jobs, max=100_000)
    check_number("job_ms", job_ms, min=0.1, max=10_000)
    rates: dict[int, float] = {}
    for n in workers:
        check_count("workers item", n, max=32)
        q = JobQueue(client, f"{name}-{n}")
        handler = "labkit.lab.queues.demo:spin"
        with WorkerProcesses(
            url, q.name, n, handler=handler, options=["--batch", "1"]
        ) as procs:
            procs.wait_ready(q, timeout=30)
            before = q.counts().completed
            start = time.perf_counter()
            q.enqueue_many([{"ms": job_ms}] * jobs)
            deadline = time.monotonic() + timeout
            while q.counts().completed < before + jobs:
                procs.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{n} workers: jobs not done in {timeout:g} s")
                time.sleep(0.005)
            rates[n] = jobs / (time.perf_counter() - start)
    return rates


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
    max_attempts: int = 3,
    backoff: float = 0.02,
) -> tuple[RunResult, QueueCounts]:
    """Run ``jobs`` :func:`flaky_sleep` jobs with retries, in worker threads."""
    check_number("fail_rate", fail_rate, min=0, max=1)
    q = JobQueue(client, name, max_attempts=max_attempts, backoff=backoff)
    q.enqueue_many(list(range(jobs)))
    res = run_threads(q, flaky_sleep(fail_rate, job_ms / 1000), workers)
    return res, q.counts()
