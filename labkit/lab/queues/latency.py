"""Lab: queue latency, not only throughput: enqueue-to-start times under load.

:func:`latency_run` feeds a queue with random (Poisson) arrivals at a chosen
rate while worker threads run fixed-length jobs, and measures each job's wait
from enqueue to start, its time in the system, and the number of jobs in the
queue over time, so that Little's law (L = lambda W) can be checked against
what the queue itself reported.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import numpy as np
import redis

from labkit.core.args import DAY, check_count, check_number, check_seconds
from labkit.errors import QueueFullError
from labkit.queues import Job, JobQueue, Worker

__all__ = ["LatencyRun", "latency_run"]


@dataclass(frozen=True)
class LatencyRun:
    """One run of :func:`latency_run`.

    Attributes:
        rate: The arrival rate asked for (jobs per second).
        workers: Worker threads.
        job_seconds: Each job's own duration.
        jobs: Jobs enqueued (acknowledged).
        refused: Enqueues refused by the queue's bound (backpressure).
        arrivals: Measured arrival rate (jobs enqueued / seconds of arrivals).
        waits: Each job's seconds from enqueue to start.
        p50, p99: Percentiles of ``waits``.
        time_in_system: W, the mean seconds from enqueue to acknowledgement.
        in_system: L, the mean number of jobs in the queue (waiting and
            running, as the queue's counts reported them), sampled.
        seconds: Length of the run (first enqueue to last acknowledgement):
            the queue is empty at both ends, so over it Little's law holds
            exactly, with lambda = jobs / seconds.
    """

    rate: float
    workers: int
    job_seconds: float
    jobs: int
    refused: int
    arrivals: float
    waits: list[float]
    p50: float
    p99: float
    time_in_system: float
    in_system: float
    seconds: float

    @property
    def utilisation(self) -> float:
        """The measured arrival rate times the job's duration, per worker."""
        return self.arrivals * self.job_seconds / self.workers

    @property
    def little(self) -> float:
        """lambda * W over the run: what Little's law says ``in_system`` is."""
        return self.jobs / self.seconds * self.time_in_system


def latency_run(
    client: redis.Redis,
    name: str,
    *,
    rate: float,
    workers: int = 1,
    job_seconds: float = 0.01,
    duration: float = 1.5,
    max_length: int = 1_000_000,
    seed: int = 0,
    timeout: float = 60.0,
) -> LatencyRun:
    """Random arrivals at ``rate`` for ``duration`` seconds; measure the waits.

    Args:
        client: The server's client (a fresh queue ``name`` is used).
        rate: Arrivals per second (exponential gaps from a seeded RNG).
        workers: Worker threads (1 to 32).
        job_seconds: What each job does: sleep this long.
        duration: Seconds of arrivals.
        max_length: The queue's bound; enqueues beyond it are refused and
            counted, not retried (backpressure: the producer sheds load).
        seed: Seeds the arrival times.
        timeout: Bound on the whole run.
    """
    check_number("rate", rate, min=0.1, max=100_000)
    check_count("workers", workers, max=32)
    check_seconds("job_seconds", job_seconds, max=10, min_open=False)
    check_seconds("duration", duration, max=600)
    check_seconds("timeout", timeout, max=DAY)
    q = JobQueue(client, name, max_length=max_length)
    waits: list[float] = []
    in_system: list[float] = []
    lock = threading.Lock()

    def handler(job: Job) -> None:
        started = time.time()
        time.sleep(job_seconds)
        with lock:
            waits.append(started - job.payload["t"])
            in_system.append(time.time() - job.payload["t"])

    # A blocking read (not polling) wakes up as soon as a job arrives.
    crew = [Worker(q, handler, name=f"lat-{i}", block=0.5) for i in range(workers)]
    threads = [
        threading.Thread(target=w.run, kwargs={"timeout": timeout}, daemon=True)
        for w in crew
    ]
    rng = random.Random(seed)
    samples: list[tuple[float, int]] = []  # (time, jobs in the queue)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            c = q.counts()
            samples.append((time.time(), c.waiting + c.running))
            done.wait(0.005)

    sampler = threading.Thread(target=sample, name="labkit-sampler", daemon=True)
    jobs = refused = 0
    try:
        for t in [*threads, sampler]:
            t.start()
        start = time.time()
        at = start + rng.expovariate(rate)
        while at < start + duration:
            time.sleep(max(0.0, at - time.time()))
            try:
                q.enqueue({"t": time.time()})
                jobs += 1
            except QueueFullError:
                refused += 1
            at += rng.expovariate(rate)
        deadline = start + timeout
        while len(waits) < jobs or not q.drained():
            if time.time() > deadline:
                raise TimeoutError(f"{name}: jobs not done within {timeout:g} s")
            time.sleep(0.005)
        seconds = time.time() - start
    finally:
        done.set()
        for w in crew:
            w.stop()
        for t in [*threads, sampler]:
            t.join(10)
    # Time-average of the sampled count over the run (trapezoids).
    ts = np.array([t for t, _ in samples])
    ns = np.array([n for _, n in samples], dtype=float)
    area = float(np.sum((ns[1:] + ns[:-1]) / 2 * np.diff(ts))) if len(ts) > 1 else 0.0
    mean_n = area / float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
    arr = np.array(waits) if waits else np.zeros(1)
    return LatencyRun(
        rate,
        workers,
        job_seconds,
        jobs,
        refused,
        jobs / duration,
        sorted(waits),
        float(np.percentile(arr, 50)),
        float(np.percentile(arr, 99)),
        float(np.mean(in_system)) if in_system else 0.0,
        mean_n,
        seconds,
    )
