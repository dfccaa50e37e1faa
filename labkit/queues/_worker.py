"""Worker: read jobs with XREADGROUP, run the handler, ack or retry, recover."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import redis

from labkit.queues._queue import GROUP, Job, JobQueue
from labkit.queues._types import _positive_int, _seconds

__all__ = ["Handler", "RunResult", "Worker", "run_threads"]

Handler = Callable[[Job], Any]

_SERVER_TICK_MS = 100  # 1000 / the server's default hz


class Worker:
    """One consumer of a :class:`JobQueue`: runs jobs and acknowledges them.

    Args:
        queue: The queue to work on.
        handler: Called with each :class:`Job`; returning means success, an
            exception means failure (retry with backoff, then dead letter).
        name: Consumer name in the group; by default ``host-pid-n``. Names
            must be unique among live workers.
        batch: Entries read per XREADGROUP. Larger batches make fewer round
            trips, but every entry of a batch counts towards the visibility
            timeout from the moment it is read.
        block: Longest wait for new jobs when the stream is empty, in
            seconds. A new job ends the wait at once; waits shorter than the
            server's timer tick (100 ms) are done by polling.

    Each step of the loop (1) moves due delayed jobs into the stream, (2) now
    and then takes over entries left unacknowledged for longer than
    ``queue.visibility_timeout`` (XAUTOCLAIM: their worker died or hangs), and
    (3) reads new entries. A job is acknowledged (XACK, then XDEL) only after
    its handler returned, so a crash can make a job run twice, never zero
    times.
    """

    _count = 0

    def __init__(
        self,
        queue: JobQueue,
        handler: Handler,
        *,
        name: str | None = None,
        batch: int = 10,
        block: float = 1.0,
    ) -> None:
        if not isinstance(queue, JobQueue):
            raise TypeError(f"queue={queue!r}: must be a labkit.queues.JobQueue")
        if not callable(handler):
            raise TypeError(f"handler={handler!r}: must be callable with a Job")
        Worker._count += 1
        self.queue = queue
        self.handler = handler
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{Worker._count}"
        self.batch = _positive_int("batch", batch)
        self.block_ms = max(1, round(_seconds("block", block) * 1000))
        self.processed = 0  #: handler calls made by this worker
        self.failed = 0  #: handler calls that raised
        self.late_acks = 0  #: successes already acknowledged elsewhere
        self._stop = threading.Event()
        self._last_claim = 0.0
        self._claim_cursor = "0-0"
        queue.client.xgroup_createconsumer(queue.stream, GROUP, self.name)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the job in hand."""
        self._stop.set()

    def step(self) -> int:
        """Do one round: promote, maybe recover, read and run. Returns jobs run."""
        q = self.queue
        _moved, next_due_ms = q.scripts["promote"](
            keys=[q.delayed, q.stream], args=[100]
        )
        entries = self._recover()
        if not entries:
            # Wake up in time for the next delayed job and the next claim check.
            claim_in = self._last_claim + q.visibility_timeout / 4 - time.monotonic()
            wait_ms = min(self.block_ms, max(1, round(claim_in * 1000)))
            if next_due_ms >= 0:
                wait_ms = min(wait_ms, max(1, next_due_ms))
            entries = self._read(wait_ms)
        return self._run_entries(entries)

    def _read(self, wait_ms: int) -> list[tuple[str, dict[str, str]]]:
        q = self.queue
        # The server checks blocking timeouts only `hz` times a second (10 by
        # default), so BLOCK 10 can last 100 ms. Short waits poll instead.
        polling = wait_ms < _SERVER_TICK_MS
        try:
            reply: Any = q.client.xreadgroup(
                GROUP,
                self.name,
                {q.stream: ">"},
                count=self.batch,
                block=None if polling else wait_ms,
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            q.ensure_group()  # the stream was deleted (flushed) under us
            return []
        if not reply and polling:
            self._stop.wait(wait_ms / 1000)
        return reply[0][1] if reply else []

    def _recover(self) -> list[tuple[str, dict[str, str]]]:
        q = self.queue
        now = time.monotonic()
        if now - self._last_claim < q.visibility_timeout / 4:
            return []
        self._last_claim = now
        cursor, entries, *_ = q.client.xautoclaim(
            q.stream,
            GROUP,
            self.name,
            min_idle_time=round(q.visibility_timeout * 1000),
            start_id=self._claim_cursor,
            count=self.batch,
        )
        self._claim_cursor = cursor
        entries = [(eid, fields) for eid, fields in entries if fields]
        if entries:
            self._last_claim = 0.0  # there may be more: look again next step
            q.client.hincrby(q.stats, "recovered", len(entries))
        return entries

    def _run_entries(self, entries: list[tuple[str, dict[str, str]]]) -> int:
        q = self.queue
        if not entries:
            return 0
        pipe = q.client.pipeline(transaction=False)
        for _eid, fields in entries:
            q.scripts["start"](
                keys=[q.job_key(fields["job"])], args=[self.name], client=pipe
            )
        starts = pipe.execute()
        ran = 0
        for (eid, fields), (attempt, max_attempts) in zip(entries, starts, strict=True):
            job_id = fields["job"]
            if attempt == 0:  # record expired or flushed: nothing to run
                q.client.xack(q.stream, GROUP, eid)
                q.client.xdel(q.stream, eid)
                continue
            if attempt > max_attempts:  # it kept killing its workers
                self._fail(eid, job_id, "attempts exhausted by worker crashes")
                continue
            job = Job(job_id, json.loads(fields["payload"]), attempt, eid, q)
            ran += 1
            self.processed += 1
            try:
                self.handler(job)
            except Exception as exc:  # any handler error is a failed attempt
                self.failed += 1
                self._fail(eid, job_id, f"{type(exc).__name__}: {exc}"[:500])
                continue
            acked = q.scripts["ack"](
                keys=[q.stream, q.job_key(job_id), q.stats],
                args=[GROUP, eid, q.keep],
            )
            if not acked:
                self.late_acks += 1
        return ran

    def _fail(self, eid: str, job_id: str, error: str) -> None:
        q = self.queue
        q.scripts["fail"](
            keys=[q.stream, q.delayed, q.dead, q.job_key(job_id), q.stats],
            args=[GROUP, eid, job_id, error],
        )

    def run(
        self,
        *,
        burst: bool = False,
        max_jobs: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Work until stopped; returns the number of handler calls made.

        Args:
            burst: Return once the queue is drained (nothing waiting, running
                or delayed), for batch runs and tests.
            max_jobs: Return after this many handler calls.
            timeout: Return after this many seconds, drained or not.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        start = self.processed
        self._stop.clear()
        while not self._stop.is_set():
            ran = self.step()
            if max_jobs is not None and self.processed - start >= max_jobs:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if burst and ran == 0 and self.queue.drained():
                break
        return self.processed - start


class RunResult(NamedTuple):
    """What :func:`run_threads` measured.

    Attributes:
        seconds: Wall time from the start until the queue was drained.
        jobs_per_second: Jobs finished (done or dead) per second.
        times: Seconds since the start at each sample.
        finished: Jobs finished (done + dead) at each sample.
    """

    seconds: float
    jobs_per_second: float
    times: list[float]
    finished: list[int]


def run_threads(
    queue: JobQueue,
    handler: Handler,
    workers: int,
    *,
    timeout: float = 60.0,
    sample_every: float = 0.02,
) -> RunResult:
    """Run ``workers`` workers in threads until the queue is drained.

    Threads suit handlers that wait (I/O, ``sleep``): the GIL is released
    while they wait. CPU-bound handlers need processes
    (:class:`~labkit.lab.queues.WorkerProcesses`). The rate counts the jobs that
    finished during the run, from the queue's totals.
    """
    _positive_int("workers", workers)
    before = queue.counts()
    pool = [Worker(queue, handler, block=0.01) for _ in range(workers)]
    threads = [
        threading.Thread(target=w.run, kwargs={"burst": True, "timeout": timeout})
        for w in pool
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    times, finished = [0.0], [0]
    while any(t.is_alive() for t in threads):
        time.sleep(sample_every)
        c = queue.counts()
        times.append(time.perf_counter() - start)
        finished.append(c.completed + c.dead - before.completed - before.dead)
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join()
    c = queue.counts()
    done = c.completed + c.dead - before.completed - before.dead
    times.append(elapsed)
    finished.append(done)
    return RunResult(elapsed, done / elapsed, times, finished)
