"""Lab: run_threads, a pool of Worker threads that drains a queue and measures it.

A measuring harness, not part of the library (``labkit.queues``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, NamedTuple

from labkit.core.args import DAY, check_count, check_seconds
from labkit.errors import WorkerError
from labkit.queues import Handler, JobQueue, Worker

__all__ = ["RunResult", "run_threads"]


class RunResult(NamedTuple):
    """What :func:`run_threads` measured.

    Attributes:
        seconds: Wall time from the start until the queue was drained (or the
            timeout).
        jobs_per_second: Jobs finished (done or dead) per second.
        times: Seconds since the start at each sample.
        finished: Jobs finished (done + dead) at each sample.
        drained: False if the timeout ended the run first.
    """

    seconds: float
    jobs_per_second: float
    times: list[float]
    finished: list[int]
    drained: bool


def run_threads(
    queue: JobQueue,
    handler: Handler,
    workers: int,
    *,
    timeout: float = 60.0,
    sample_every: float = 0.02,
    **worker_options: Any,
) -> RunResult:
    """Run ``workers`` workers in threads until the queue is drained.

    Threads suit handlers that wait (I/O, ``sleep``): the GIL is released
    while they wait. CPU-bound handlers need processes
    (:class:`~labkit.lab.queues.WorkerProcesses`). The rate counts the jobs that
    finished during the run, from the queue's totals.

    The threads are daemon threads; an interrupt (Ctrl-C, a notebook's stop
    button) stops every worker after its job in hand before it propagates.
    Each worker leaves the consumer group when it ends.

    Args:
        queue: The queue to drain.
        handler: As for :class:`Worker`.
        workers: Number of threads (1 to 64).
        timeout: Seconds after which the workers stop, drained or not.
        sample_every: Seconds between samples of the finished count.
        **worker_options: Passed to each :class:`Worker` (``block`` defaults
            to 0.01 here).

    Raises:
        WorkerError: A worker raised (its exception is the ``__cause__``);
            no rate is reported from a run that lost a worker.
    """
    check_count("workers", workers, max=64)
    check_seconds("timeout", timeout, max=DAY)
    check_seconds("sample_every", sample_every, min=0.001, max=10, min_open=False)
    worker_options.setdefault("block", 0.01)
    before = queue.counts()
    pool = [Worker(queue, handler, **worker_options) for _ in range(workers)]
    errors: list[tuple[Worker, BaseException]] = []

    def work(w: Worker) -> None:
        try:
            w.run(burst=True, timeout=timeout)
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append((w, exc))
            for other in pool:  # no rate from a run that lost a worker: stop now
                other.stop()

    threads = [
        threading.Thread(target=work, args=(w,), name=f"labkit-{w.name}", daemon=True)
        for w in pool
    ]
    start = time.perf_counter()
    times, finished = [0.0], [0]
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(sample_every)
            c = queue.counts()
            times.append(time.perf_counter() - start)
            finished.append(c.completed + c.dead - before.completed - before.dead)
    finally:
        for w in pool:
            w.stop()
        for t in threads:
            t.join(timeout=max(w.server_timeout for w in pool) + 5)
    elapsed = time.perf_counter() - start
    if errors:
        w, exc = errors[0]
        raise WorkerError(
            f"{len(errors)} of {workers} workers of queue {queue.name!r} failed; "
            f"first: {w.name!r}: {type(exc).__name__}: {exc}",
            worker=w.name,
            queue=queue.name,
        ) from exc
    c = queue.counts()
    done = c.completed + c.dead - before.completed - before.dead
    times.append(elapsed)
    finished.append(done)
    drained = c.waiting + c.running + c.delayed == 0
    return RunResult(elapsed, done / elapsed, times, finished, drained)
