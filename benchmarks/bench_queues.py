"""labkit.queues against rq: jobs per second, and how long a job waits to start.

Both queues run on the same server in the same run, with the same no-op job
(``labkit.lab.queues.demo.noop``), so what is measured is each queue's own cost
per job. Workers are separate processes, started and registered before any
clock starts. Two phases per configuration:

- **throughput**: a batch of ``jobs`` jobs is enqueued with each queue's bulk
  enqueue (labkit: one script call per 500 jobs; rq: ``enqueue_many`` in a
  pipeline), timed until the last one is finished. ``rounds`` batches, median.
- **latency**: ``paced`` jobs enqueued one at a time at the same rate for both
  queues, a quarter of the throughput rq just reached with as many workers (so
  both queues keep up), each job's wait from enqueue to start read from the
  queue's own records afterwards (labkit: the job record's ``enqueued_ms`` and
  ``started_ms``, both from the server's clock; rq: the job's ``enqueued_at``
  and ``started_at``, both from this machine's clock).

rq's default worker forks a work horse per job; ``rq.SimpleWorker`` runs jobs
in its own process, which is the fair comparison (labkit's worker does not
fork either). rq is an optional dependency: ``pip install -e ".[bench]"``.

Usage: python benchmarks/bench_queues.py [jobs] [rounds] [paced]
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

import labkit
from labkit.lab.queues import WorkerProcesses
from labkit.queues import JobQueue
from labkit.server import default_server

NOOP = "labkit.lab.queues.demo.noop"
WORKERS = (1, 4)


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)  # the same polling for both queues


def paced(enqueue: Callable[[int], Any], n: int, rate: float) -> list[Any]:
    """Call ``enqueue(i)`` n times at ``rate`` per second; returns what it returned."""
    out, start = [], time.perf_counter()
    for i in range(n):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        out.append(enqueue(i))
    return out


class Result(dict):  # type: ignore[type-arg]
    """rates (jobs/s per round) and waits (seconds from enqueue to start)."""


def bench_labkit(
    url: str, n_workers: int, jobs: int, rounds: int, n: int, rate: float | None
) -> Result:
    r = labkit.connect(url)
    q = JobQueue(r, f"bench-{uuid.uuid4().hex[:8]}", keep=600)
    rates = []
    noop = "labkit.lab.queues.demo:noop"
    with WorkerProcesses(url, q.name, n_workers, handler=noop) as procs:
        procs.wait_ready(q)
        for _ in range(rounds):
            before = q.counts().completed
            start = time.perf_counter()
            for i in range(0, jobs, 500):
                q.enqueue_many([i] * min(500, jobs - i))
            target = before + jobs
            wait_until(lambda t=target: q.counts().completed >= t, "labkit jobs")
            rates.append(jobs / (time.perf_counter() - start))
        before = q.counts().completed
        rate = rate or statistics.median(rates) / 4
        ids = paced(q.enqueue, n, rate)
        target = before + n
        wait_until(lambda: q.counts().completed >= target, "labkit paced jobs")
    pipe = r.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(q.job_key(job_id), "enqueued_ms", "started_ms")
    waits = [(int(s) - int(e)) / 1000 for e, s in pipe.execute()]
    r.delete(q.stream, q.stats, *(q.job_key(i) for i in ids))
    return Result(rates=rates, waits=waits, paced_rate=rate)


def rq_worker_main(name: str) -> None:
    """Entry point of one rq worker process (``--rq-worker NAME``)."""
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(os.environ["REDIS_URL"])
    worker = SimpleWorker([Queue(name, connection=conn)], connection=conn)
    worker.work(logging_level="WARNING")


def bench_rq(
    url: str, n_workers: int, jobs: int, rounds: int, n: int, rate: float | None
) -> Result:
    from rq import Queue, SimpleWorker
    from rq.job import Job
    from rq.registry import FinishedJobRegistry

    conn = redis.Redis.from_url(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    q = Queue(name, connection=conn)
    finished = FinishedJobRegistry(queue=q)

    def done() -> int:
        # ZCARD only: registry.count would also run rq's cleanup on every poll.
        return finished.get_job_count(cleanup=False)

    env = {**os.environ, "REDIS_URL": url}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--rq-worker", name],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(n_workers)
    ]
    rates = []
    try:
        wait_until(
            lambda: SimpleWorker.count(connection=conn, queue=q) == n_workers,
            "rq workers",
        )
        for _ in range(rounds):
            before = done()
            start = time.perf_counter()
            for i in range(0, jobs, 500):
                q.enqueue_many(
                    [
                        Queue.prepare_data(NOOP, args=(j,), result_ttl=600)
                        for j in range(i, min(i + 500, jobs))
                    ]
                )
            target = before + jobs
            wait_until(lambda t=target: done() >= t, "rq jobs")
            rates.append(jobs / (time.perf_counter() - start))
        before = done()
        rate = rate or statistics.median(rates) / 4
        ids = [
            job.id
            for job in paced(lambda i: q.enqueue(NOOP, i, result_ttl=600), n, rate)
        ]
        target = before + n
        wait_until(lambda: done() >= target, "rq paced jobs")
        fetched = Job.fetch_many(ids, connection=conn)
        waits = [
            (job.started_at - job.enqueued_at).total_seconds()
            for job in fetched
            if job is not None and job.started_at and job.enqueued_at
        ]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return Result(rates=rates, waits=waits, paced_rate=rate)


def main(
    jobs: int = 1000, rounds: int = 3, n: int = 100
) -> dict[tuple[str, int], Result]:
    url = os.environ.get("REDIS_URL") or default_server().url
    results: dict[tuple[str, int], Result] = {}
    paced_at: dict[int, float] = {}
    for workers in WORKERS:
        rate = 0.0
        for system, bench in (("rq", bench_rq), ("labkit.queues", bench_labkit)):
            # rq first: its throughput sets the paced rate both queues get.
            res = bench(url, workers, jobs, rounds, n, rate or None)
            rate = paced_at[workers] = res["paced_rate"]
            results[system, workers] = res
            print(
                f"  {system:<14} {workers} worker(s): "
                + ", ".join(f"{x:,.0f}" for x in res["rates"])
                + f" jobs/s; paced at {rate:.1f}/s"
            )
    print(
        f"\n{jobs} no-op jobs per batch, median of {rounds} batches; enqueue-to-start"
        f" of {n} jobs enqueued one by one at a quarter of rq's rate"
        f" ({', '.join(f'{w} worker(s): {r:.0f}/s' for w, r in paced_at.items())});"
        " same server, same run"
    )
    head = ("queue", "workers", "jobs/s", "labkit/rq", "start p50", "start p99")
    results = dict(sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0] == "rq")))
    print(
        f"{head[0]:<16}{head[1]:>8}{head[2]:>10}{head[3]:>11}{head[4]:>11}{head[5]:>11}"
    )
    for (system, workers), res in results.items():
        rate_ = statistics.median(res["rates"])
        other = statistics.median(results["labkit.queues", workers]["rates"])
        ratio = f"{other / rate_:>10.1f}x" if system == "rq" else " " * 11
        p50, p99 = np.percentile(np.array(res["waits"]) * 1000, [50, 99])
        print(
            f"{system:<16}{workers:>8}{rate_:>10,.0f}{ratio}"
            f"{p50:>8.1f} ms{p99:>8.1f} ms"
        )
    return results


if __name__ == "__main__" and "--instructions" in sys.argv:
    # Instructions per operation (callgrind), the load-proof counterpart of the
    # rates below, and the targets: bench_instructions.py, topic "queues".
    from bench_instructions import main as count_instructions

    sys.exit(count_instructions(["--only", "queues"]))

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rq-worker":
        rq_worker_main(sys.argv[2])
    else:
        main(*[int(a) for a in sys.argv[1:4]])
