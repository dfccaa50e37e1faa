"""Lab: many processes hammering one key: does a limiter admit exactly its limit?

Used by the tests and notebook 03a. Workers are real processes (``spawn``), each
with its own client made from the server URL, released together by a barrier so
that their requests interleave on the server. Every wait is bounded: the URL is
probed before any process starts, a worker that fails breaks the barrier so the
others stop at once, and a trial that takes longer than ``timeout`` raises.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from multiprocessing.pool import Pool
from types import TracebackType
from typing import Any

import labkit
from labkit.core.args import check_count, check_int, check_key, check_seconds
from labkit.lab.errors import ContentionError
from labkit.lab.ratelimit.naive import get_then_incr
from labkit.ratelimit import ALGORITHMS, MAX_PERIOD
from labkit.server import mask_url

__all__ = ["NAIVE", "Contention", "hammer"]

NAIVE = "get_then_incr"
#: Seconds a worker's socket may stay silent before its call fails.
SOCKET_TIMEOUT = 10.0
_barrier: Any = None
_clients: dict[str, Any] = {}


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _client(url: str) -> Any:
    """This worker's client for ``url``, made once and kept for later trials."""
    global _clients
    if url not in _clients:
        _clients[url] = labkit.connect(url, socket_timeout=SOCKET_TIMEOUT)
    return _clients[url]


def hammer(
    url: str, algorithm: str, key: str, attempts: int, limit: int, period: float
) -> int:
    """One worker's share: ``attempts`` requests on ``key``; how many got through."""
    try:
        client = _client(url)
        limiter = (
            None
            if algorithm == NAIVE
            else ALGORITHMS[algorithm](client, limit=limit, period=period)
        )
        client.ping()  # connected before the start line
        _barrier.wait(timeout=60)
        admitted = 0
        for _ in range(attempts):
            if limiter is None:
                admitted += get_then_incr(client, key, limit, int(period))
            else:
                admitted += limiter.allow(key).allowed
        return admitted
    except BaseException:
        _barrier.abort()  # the others stop waiting for this one
        raise


class Contention:
    """A pool of worker processes, started once, for several trials.

    Args:
        url: The server's URL (``Server.url``); each worker connects to it.
        processes: Number of worker processes (2 to 64).

    Raises:
        ServerUnreachableError: The URL does not answer (checked before any
            process is started).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, url: str, processes: int = 16) -> None:
        self.processes = check_int("processes", processes, min=2, max=64)
        # Fail here, in seconds, rather than in 16 processes.
        labkit.connect(url, socket_timeout=SOCKET_TIMEOUT).close()
        self.url = url
        ctx = mp.get_context("spawn")
        self._barrier = ctx.Barrier(processes)
        self._pool: Pool = ctx.Pool(processes, _init, (self._barrier,))
        self._lock = threading.Lock()

    def run(
        self,
        algorithm: str,
        key: str,
        *,
        attempts: int = 100,
        limit: int = 50,
        period: float = 3600,
        timeout: float = 120.0,
    ) -> int:
        """Every worker makes ``attempts`` requests on ``key``; total admitted.

        Args:
            algorithm: A key of ``labkit.ratelimit.ALGORITHMS``, or ``NAIVE``
                for the two-command ``GET``/``INCR`` limiter.
            key: The key every worker hammers.
            attempts: Requests per worker (1 to 100,000).
            limit, period: The limit under test.
            timeout: Seconds the whole trial may take.

        Raises:
            ContentionError: The trial did not finish within ``timeout``, or
                a worker failed (the cause is chained).
        """
        if algorithm != NAIVE and algorithm not in ALGORITHMS:
            allowed = ", ".join([*ALGORITHMS, NAIVE])
            raise ValueError(f"algorithm={algorithm!r}: must be one of {allowed}")
        key = check_key("key", key)
        check_count("attempts", attempts, max=100_000)
        check_count("limit", limit)
        check_seconds("period", period, min=1, max=MAX_PERIOD, min_open=False)
        check_seconds("timeout", timeout, max=3600)
        job = (self.url, algorithm, key, attempts, limit, period)
        with self._lock:
            pending = self._pool.starmap_async(
                hammer, [job] * self.processes, chunksize=1
            )
            try:
                return sum(pending.get(timeout))
            except mp.TimeoutError as exc:
                raise ContentionError(
                    f"{algorithm} on {key!r}: the trial did not finish in {timeout} s",
                    url=mask_url(self.url),
                    algorithm=algorithm,
                ) from exc
            except Exception as exc:
                raise ContentionError(
                    f"{algorithm} on {key!r}: a worker failed: {exc}",
                    url=mask_url(self.url),
                    algorithm=algorithm,
                ) from exc
            finally:
                self._barrier.reset()  # ready for the next trial, broken or not

    def close(self) -> None:
        """Stop the worker processes (at most a few seconds)."""
        self._pool.terminate()
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
