"""Lab: does a cluster scale? Write throughput of N masters from several processes.

Worker processes (``spawn``), each with its own ``RedisCluster`` client,
are released together by a barrier and write pipelined ``SET``s of random
keys for a fixed time; the total is the cluster's write rate. The honest
limit: every master and every client process shares this machine's cores,
so more masters help only while cores are idle.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from multiprocessing.pool import Pool
from types import TracebackType
from typing import Any, NamedTuple

from labkit.core.args import check_count, check_seconds
from labkit.lab.sharding._topology import master_labels, masters_by_id
from labkit.server import Cluster

__all__ = ["ServerWork", "Throughput", "WriteLoad", "server_work"]

_barrier: Any = None


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _write(host: str, port: int, password: str, seconds: float, batch: int) -> int:
    """One worker: pipelined SETs for ``seconds``; how many were acknowledged."""
    from redis.cluster import RedisCluster

    client = RedisCluster(host=host, port=port, password=password, socket_timeout=10)
    try:
        client.ping()
        rng = random.Random(os.getpid())
        _barrier.wait(timeout=60)
        done = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pipe = client.pipeline(transaction=False)
            for _ in range(batch):
                pipe.set(f"lab:scale:{rng.getrandbits(32)}", "x")
            done += len(pipe.execute())
        return done
    finally:
        client.close()


class Throughput(NamedTuple):
    """One measurement.

    Attributes:
        masters: Masters in the cluster.
        processes: Client processes.
        ops_per_second: Acknowledged writes per second, all processes.
        cores: CPU cores of this machine (``os.cpu_count()``).
    """

    masters: int
    processes: int
    ops_per_second: float
    cores: int


class ServerWork(NamedTuple):
    """What one master has done so far, by its own count.

    Attributes:
        cpu_seconds: ``used_cpu_user + used_cpu_sys`` of the server process
            (``INFO cpu``): its main thread and any others.
        sets: ``SET`` commands it has run (``INFO commandstats``).
    """

    cpu_seconds: float
    sets: int


def server_work(cluster: Cluster) -> dict[str, ServerWork]:
    """``{"master <i>": ServerWork}`` for every master serving slots.

    Read it before and after a load and subtract: the difference is what
    each master's own process spent on that load, whatever the client did.
    """
    labels = master_labels(cluster)
    out = {}
    for nid, server in masters_by_id(cluster).items():
        with server.client(socket_timeout=10) as client:
            info = client.info("everything")
        cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        sets = int(info.get("cmdstat_set", {}).get("calls", 0))
        out[labels[nid]] = ServerWork(cpu, sets)
    return dict(sorted(out.items()))


class WriteLoad:
    """A pool of client processes, started once, to load several clusters in turn.

    Args:
        processes: Client processes (2 to 64).
        seconds: Measured time per run.
        batch: ``SET``s per pipeline.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, processes: int = 3, seconds: float = 2.0, batch: int = 50):
        self.processes = check_count("processes", processes, max=64)
        if processes < 2:
            raise ValueError(f"processes={processes!r}: must be from 2 to 64")
        self.seconds = check_seconds("seconds", seconds, max=600)
        self.batch = check_count("batch", batch, max=10_000)
        ctx = mp.get_context("spawn")
        self._pool: Pool = ctx.Pool(processes, _init, (ctx.Barrier(processes),))

    def run(self, cluster: Cluster) -> Throughput:
        """Every process writes to ``cluster`` for ``seconds``; the total rate."""
        first = cluster.seed()
        job = (first.host, first.port, cluster.password, self.seconds, self.batch)
        counts = self._pool.starmap(_write, [job] * self.processes, chunksize=1)
        return Throughput(
            masters=len(cluster.primaries()),
            processes=self.processes,
            ops_per_second=sum(counts) / self.seconds,
            cores=os.cpu_count() or 1,
        )

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.close()
        self._pool.join()

    def __enter__(self) -> WriteLoad:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
