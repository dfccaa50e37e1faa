"""Lab: kill the server, not the worker: a queue under each durability setting.

:func:`server_crash_run` runs a producer and workers (threads) against a
queue on a server of its own, SIGKILLs that server mid-stream, brings the
queue back (a restart on the same data dir, or a replica promoted in its
place) and counts, from a ledger kept on another server: enqueues the server
acknowledged that never ran, and jobs that ran twice.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from labkit.core.args import DAY, check_choice, check_count, check_number, check_seconds
from labkit.lab.persistence import policy_config
from labkit.lab.proxy import Proxy
from labkit.queues import Job, JobQueue, Worker
from labkit.server import Server, no_retry

__all__ = [
    "SETTINGS",
    "ServerCrash",
    "Traffic",
    "TrafficCount",
    "impatient_client",
    "server_crash_run",
]

#: What :func:`server_crash_run` can try: a persistence policy and a restart,
#: or a replica promoted when the primary dies.
SETTINGS: dict[str, str | None] = {
    "no persistence": "none",
    "AOF everysec": "aof-everysec",
    "AOF always": "aof-always",
    "replica failover": None,
}


@dataclass(frozen=True)
class ServerCrash:
    """What one server crash did to a queue.

    Attributes:
        setting: One of :data:`SETTINGS`.
        acknowledged: Enqueues the server acknowledged (before and after).
        backlog: Jobs waiting or running just before the kill.
        lost: Acknowledged enqueues whose job never ran.
        ran_twice: Jobs that ran more than once.
        refused: Enqueue attempts that failed while the server was down (the
            producer saw an error and tried again: not acknowledged, not lost).
        down_seconds: From the kill until the queue answered again.
    """

    setting: str
    acknowledged: int
    backlog: int
    lost: int
    ran_twice: int
    refused: int
    down_seconds: float


class _Producer(threading.Thread):
    """Enqueues ``jobs`` jobs at ``rate``, retrying each until acknowledged."""

    def __init__(self, queue: JobQueue, jobs: int, rate: float, deadline: float):
        super().__init__(name="labkit-producer", daemon=True)
        self.queue, self.jobs, self.rate, self.deadline = queue, jobs, rate, deadline
        self.acked: list[str] = []
        self.refused = 0

    def run(self) -> None:
        start = time.monotonic()
        for i in range(self.jobs):
            time.sleep(max(0.0, start + i / self.rate - time.monotonic()))
            while time.monotonic() < self.deadline:
                try:
                    self.acked.append(self.queue.enqueue({"i": i}))
                    break
                except redis.RedisError:
                    self.refused += 1
                    time.sleep(0.02)


class _Workers:
    """``n`` worker threads on one queue, stoppable together."""

    def __init__(self, queue: JobQueue, n: int, handler: Any) -> None:
        self.workers = [
            Worker(queue, handler, name=f"w{i}", block=0.05, server_timeout=1)
            for i in range(n)
        ]
        self.threads = [
            threading.Thread(
                target=self._run, args=(w,), name=f"labkit-{w.name}", daemon=True
            )
            for w in self.workers
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _run(worker: Worker) -> None:
        with contextlib.suppress(Exception):  # a worker of a dead server gives up
            worker.run(timeout=DAY)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        for t in self.threads:
            t.join(10)


@contextlib.contextmanager
def _servers(
    setting: str, lag_ms: float
) -> Iterator[tuple[Server, Server | None, Proxy | None]]:
    policy = SETTINGS[setting]
    if policy is not None:
        with Server(config=policy_config(policy)) as server:
            yield server, None, None
        return
    # A primary, and a replica that hears from it through a proxy adding
    # ``lag_ms`` to the replication stream (a replica farther away).
    password = secrets.token_hex(16)
    base = {**policy_config("none"), "repl-diskless-sync-delay": "0"}
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(
            Server(config={**base, "masterauth": password}, password=password)
        )
        link = stack.enter_context(Proxy.to(primary))
        replica = stack.enter_context(
            Server(
                config={
                    **base,
                    "replicaof": f"{link.host} {link.port}",
                    "masterauth": password,
                },
                password=password,
            )
        )
        probe = replica.client()
        deadline = time.monotonic() + 30
        while probe.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica not in sync:\n{replica.log_tail(10)}")
            time.sleep(0.02)
        link.set_latency(lag_ms, direction="down")
        yield primary, replica, link


def impatient_client(server: Server) -> redis.Redis:
    """A client of ``server`` that fails fast when it dies (1 s timeouts, no retry)."""
    return server.client(retry=no_retry(), socket_timeout=1, socket_connect_timeout=1)


_client = impatient_client


@dataclass(frozen=True)
class TrafficCount:
    """What :meth:`Traffic.finish` counted on the ledger.

    Attributes:
        acknowledged: Enqueues the server acknowledged.
        lost: Acknowledged enqueues whose job never ran.
        ran_twice: Jobs that ran more than once.
        refused: Enqueue attempts that failed (the producer tried again).
    """

    acknowledged: int
    lost: int
    ran_twice: int
    refused: int


class Traffic:
    """A producer thread and worker threads on one queue, every run on a ledger.

    The producer enqueues ``jobs`` jobs at ``rate`` per second, retrying each
    until the server acknowledges it; ``workers`` worker threads run them
    (``job_seconds`` each), and each run is counted in a hash on ``ledger``, a
    server that does not crash (key ``lab:traffic:<token>:runs``, removed by
    :meth:`finish`). The harness only moves jobs; what to break, and when,
    is up to the caller.
    """

    def __init__(
        self,
        queue: JobQueue,
        ledger: redis.Redis,
        *,
        jobs: int = 300,
        rate: float = 600.0,
        job_seconds: float = 0.004,
        workers: int = 1,
        timeout: float = 120.0,
    ) -> None:
        check_count("jobs", jobs, max=100_000)
        check_number("rate", rate, min=1, max=100_000)
        check_seconds("job_seconds", job_seconds, max=10, min_open=False)
        check_count("workers", workers, max=16)
        check_seconds("timeout", timeout, max=DAY)
        self.ledger, self.jobs, self.timeout = ledger, jobs, timeout
        self.runs = f"lab:traffic:{secrets.token_hex(4)}:runs"
        self.deadline = time.monotonic() + timeout
        self._n = workers

        def handler(job: Job) -> None:
            ledger.hincrby(self.runs, job.id, 1)
            time.sleep(job_seconds)

        self._handler = handler
        self.producer = _Producer(queue, jobs, rate, self.deadline)
        self.crew = _Workers(queue, workers, handler)
        self.producer.start()

    @property
    def acked(self) -> int:
        """Enqueues acknowledged so far."""
        return len(self.producer.acked)

    def wait_acked(self, n: float) -> None:
        """Block until at least ``n`` enqueues have been acknowledged."""
        while self.acked < n:
            if time.monotonic() > self.deadline:
                self.stop()
                raise TimeoutError("the producer stalled")
            time.sleep(0.001)

    def move_to(self, queue: JobQueue) -> None:
        """Point the producer and fresh workers at ``queue`` (after a failover)."""
        self.producer.queue = queue
        self.crew.stop()
        self.crew = _Workers(queue, self._n, self._handler)

    def finish(self) -> TrafficCount:
        """Wait until every job was enqueued and the queue drained; count.

        Raises:
            TimeoutError: Not drained in time (nothing is counted then: an
                unfinished job is not a lost one).
        """
        queue = self.producer.queue
        try:
            self.producer.join(max(0.0, self.deadline - time.monotonic()))
            drained = False
            while not drained and time.monotonic() < self.deadline:
                with contextlib.suppress(redis.RedisError):
                    drained = not self.producer.is_alive() and queue.drained()
                time.sleep(0.02)
            if not drained:
                raise TimeoutError(
                    f"the queue was not drained within {self.timeout:g} s "
                    "(a slow disk makes AOF always slow); raise timeout="
                )
        finally:
            self.stop()
        got: Any = self.ledger.hgetall(self.runs)
        self.ledger.delete(self.runs)
        counts = {k: int(v) for k, v in got.items()}
        return TrafficCount(
            len(self.producer.acked),
            sum(1 for job_id in self.producer.acked if job_id not in counts),
            sum(1 for n in counts.values() if n > 1),
            self.producer.refused,
        )

    def stop(self) -> None:
        """Stop the producer and the workers (idempotent)."""
        self.crew.stop()
        self.producer.deadline = 0
        self.producer.join(5)


def server_crash_run(
    ledger: redis.Redis,
    setting: str,
    *,
    jobs: int = 300,
    rate: float = 600.0,
    job_seconds: float = 0.004,
    workers: int = 1,
    kill_after: float = 0.4,
    replica_lag_ms: float = 0.0,
    timeout: float = 120.0,
) -> ServerCrash:
    """SIGKILL the queue's server mid-stream and count what the crash cost.

    The notebook (08a) runs these same steps on the page with :class:`Traffic`;
    this function repeats them for tests and further exploration. Once
    ``kill_after`` of the jobs are acknowledged, the queue's server is
    SIGKILLed (for the failover, its replication link is cut first and 10
    more enqueues are acknowledged, which no replica can have). Then either
    it restarts on its data dir (persistence settings), or its replica is
    promoted (``REPLICAOF NO ONE``) and producer and workers move to it;
    they go on until every acknowledged job has had its
    chance to run.

    Args:
        ledger: Where runs are counted (the notebook's own server).
        setting: One of :data:`SETTINGS`.
        replica_lag_ms: For the failover: milliseconds added to the
            replication stream (through a proxy), as for a replica farther
            away than this machine's loopback.

    Raises:
        ValueError: Unknown setting or counts out of range.
        TimeoutError: The jobs were not all run within ``timeout`` seconds
            (nothing is counted then: an unfinished job is not a lost one).
    """
    check_choice("setting", setting, SETTINGS)
    check_number("kill_after", kill_after, min=0, max=1, min_open=True)
    check_number("replica_lag_ms", replica_lag_ms, min=0, max=10_000)
    with _servers(setting, replica_lag_ms) as (primary, replica, link):
        queue = JobQueue(_client(primary), "crash", visibility_timeout=1)
        traffic = Traffic(
            queue,
            ledger,
            jobs=jobs,
            rate=rate,
            job_seconds=job_seconds,
            workers=workers,
            timeout=timeout,
        )
        try:
            traffic.wait_acked(jobs * kill_after)
            c = queue.counts()
            if link is not None:
                link.blackhole()  # the machine dies: its network first, then...
                # ...enqueues it acknowledges meanwhile can reach no replica.
                traffic.wait_acked(min(jobs, traffic.acked + 10))
            primary.kill()
            killed = time.monotonic()
            if replica is None:
                primary.restart()
                survivor = queue
            else:
                _client(replica).execute_command("REPLICAOF", "NO", "ONE")
                survivor = JobQueue(_client(replica), "crash", visibility_timeout=1)
                traffic.move_to(survivor)
            while True:
                try:
                    survivor.counts()
                    break
                except redis.RedisError:
                    time.sleep(0.01)
            down = time.monotonic() - killed
            got = traffic.finish()
        finally:
            traffic.stop()
    return ServerCrash(
        setting,
        got.acknowledged,
        c.waiting + c.running,
        got.lost,
        got.ran_twice,
        got.refused,
        down,
    )
