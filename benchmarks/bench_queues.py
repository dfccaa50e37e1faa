"""Jobs per second through enqueue -> process -> ack: labkit.queues against rq.

Both queues run on the same server in the same run, with the same no-op job
(``labkit.lab.queues.demo.noop``), so what is measured is each queue's own cost
per job. Workers are separate processes, started and registered before the
clock starts; each batch of jobs is timed from the first enqueue (both use
their bulk, pipelined enqueue) until the last job is acknowledged. Each
configuration runs ``rounds`` batches; the median is reported.

rq's worker forks a work horse per job by default; ``rq.SimpleWorker`` runs
jobs in its own process, which is the fair comparison (labkit's worker does
not fork either). rq is an optional dependency: ``pip install rq``.

Usage: python benchmarks/bench_queues.py [jobs] [rounds]
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

import redis

import labkit
from labkit.lab.queues import WorkerProcesses
from labkit.queues import JobQueue
from labkit.server import default_server

NOOP = "labkit.lab.queues.demo.noop"
WORKERS = (1, 4)


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)  # the same polling for both queues


def wait_for(count: Callable[[], int], target: int, what: str) -> None:
    wait_until(lambda: count() >= target, what)


def bench_labkit(url: str, n_workers: int, jobs: int, rounds: int) -> list[float]:
    r = labkit.connect(url)
    q = JobQueue(r, f"bench-{uuid.uuid4().hex[:8]}")
    rates = []
    with WorkerProcesses(url, q.name, n_workers, handler="labkit.lab.queues.demo:noop"):
        wait_until(
            lambda: len(r.xinfo_consumers(q.stream, "workers")) == n_workers,
            "labkit workers",
        )
        for _ in range(rounds):
            before = q.counts().completed
            start = time.perf_counter()
            for i in range(0, jobs, 500):
                q.enqueue_many([i] * min(500, jobs - i))
            wait_for(lambda: q.counts().completed, before + jobs, "labkit jobs")
            rates.append(jobs / (time.perf_counter() - start))
    r.delete(q.stream, q.stats)
    return rates


def rq_worker_main(name: str) -> None:
    """Entry point of one rq worker process (``--rq-worker NAME``)."""
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(os.environ["REDIS_URL"])
    worker = SimpleWorker([Queue(name, connection=conn)], connection=conn)
    worker.work(logging_level="WARNING")


def bench_rq(url: str, n_workers: int, jobs: int, rounds: int) -> list[float]:
    from rq import Queue, SimpleWorker
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
            wait_for(done, before + jobs, "rq jobs")
            rates.append(jobs / (time.perf_counter() - start))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return rates


def main(jobs: int = 2000, rounds: int = 3) -> dict[tuple[str, int], float]:
    url = os.environ.get("REDIS_URL") or default_server().url
    results: dict[tuple[str, int], float] = {}
    for n in WORKERS:
        for system, bench in (("labkit.queues", bench_labkit), ("rq", bench_rq)):
            rates = bench(url, n, jobs, rounds)
            results[system, n] = statistics.median(rates)
            print(
                f"  {system:<14} {n} worker(s): "
                + ", ".join(f"{x:,.0f}" for x in rates)
            )
    base = results["labkit.queues", 1]
    print(f"\n{jobs} no-op jobs per batch, median of {rounds} batches, same server")
    head = ("queue", "workers", "jobs/s", "vs labkit 1w", "labkit/rq")
    print(f"{head[0]:<16}{head[1]:>8}{head[2]:>10}{head[3]:>14}{head[4]:>11}")
    for (system, n), rate in results.items():
        ratio = results["labkit.queues", n] / results["rq", n]
        last = f"{ratio:>10.2f}x" if system == "rq" else ""
        print(f"{system:<16}{n:>8}{rate:>10,.0f}{rate / base:>13.2f}x{last}")
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rq-worker":
        rq_worker_main(sys.argv[2])
    else:
        args = [int(a) for a in sys.argv[1:3]]
        main(*args)
