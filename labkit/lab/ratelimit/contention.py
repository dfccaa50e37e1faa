"""Lab: many processes hammering one key: does a limiter admit exactly its limit?

Used by the tests and notebook 02. Workers are real processes (``spawn``), each
with its own client made from the server URL, released together by a barrier so
that their requests interleave on the server.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.pool import Pool
from types import TracebackType
from typing import Any

import labkit
from labkit.lab.ratelimit.naive import get_then_incr
from labkit.ratelimit import ALGORITHMS

__all__ = ["NAIVE", "Contention"]

NAIVE = "get_then_incr"
_barrier: Any = None


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _hammer(
    url: str, algorithm: str, key: str, attempts: int, limit: int, period: float
) -> int:
    """One worker's share: ``attempts`` requests on ``key``; how many got through."""
    client = labkit.connect(url)
    try:
        limiter = (
            None
            if algorithm == NAIVE
            else ALGORITHMS[algorithm](client, limit=limit, period=period)
        )
        client.ping()  # connect before the start line
        _barrier.wait(timeout=60)
        admitted = 0
        for _ in range(attempts):
            if limiter is None:
                admitted += get_then_incr(client, key, limit, int(period))
            else:
                admitted += limiter.allow(key).allowed
        return admitted
    finally:
        client.close()


class Contention:
    """A pool of worker processes, started once, for several trials.

    Args:
        url: The server's URL (``Server.url``); each worker connects to it.
        processes: Number of worker processes (>= 2).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, url: str, processes: int = 16) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int):
            raise TypeError(f"processes={processes!r}: must be an int >= 2")
        if processes < 2:
            raise ValueError(f"processes={processes!r}: must be >= 2")
        ctx = mp.get_context("spawn")
        self.url, self.processes = url, processes
        self._pool: Pool = ctx.Pool(processes, _init, (ctx.Barrier(processes),))

    def run(
        self,
        algorithm: str,
        key: str,
        *,
        attempts: int = 100,
        limit: int = 50,
        period: float = 3600,
    ) -> int:
        """Every worker makes ``attempts`` requests on ``key``; total admitted.

        Args:
            algorithm: A key of ``labkit.ratelimit.ALGORITHMS``, or ``NAIVE``
                for the two-command ``GET``/``INCR`` limiter.
        """
        if algorithm != NAIVE and algorithm not in ALGORITHMS:
            allowed = ", ".join([*ALGORITHMS, NAIVE])
            raise ValueError(f"algorithm={algorithm!r}: must be one of {allowed}")
        job = (self.url, algorithm, key, attempts, limit, period)
        return sum(self._pool.starmap(_hammer, [job] * self.processes, chunksize=1))

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.close()
        self._pool.join()

    def __enter__(self) -> Contention:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
