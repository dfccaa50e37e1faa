"""Races in threads, the server's own time per command, values over time."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from labkit.core.args import check_callable, check_count, check_name, check_seconds

__all__ = ["in_threads", "sample", "server_usec_per_call"]

C = TypeVar("C")


def in_threads(
    work: Callable[[C], object],
    clients: Sequence[C],
    times: int,
    *,
    timeout: float = 60.0,
) -> list[list[Any]]:
    """Call ``work(client)`` ``times`` times in one thread per client, at once.

    The threads wait at a barrier and start together, so their commands
    interleave as two real clients' would.

    Returns:
        One list per client of what ``work`` returned, in call order.

    Raises:
        TimeoutError: The threads did not finish within ``timeout`` seconds
            (they are told to stop and are daemon threads).
        Exception: The first exception a thread raised, re-raised here.
    """
    check_callable("work", work, signature="work(client)")
    if isinstance(clients, str | bytes) or not isinstance(clients, Sequence):
        raise TypeError(f"clients={clients!r}: must be a list of clients")
    check_count("len(clients)", len(clients), max=64)
    check_count("times", times, max=10_000_000)
    check_seconds("timeout", timeout, max=3600)
    start, stop = threading.Barrier(len(clients)), threading.Event()
    results: list[list[Any]] = [[] for _ in clients]
    errors: list[BaseException] = []

    def loop(i: int, client: C) -> None:
        try:
            start.wait(timeout)
            for _ in range(times):
                if stop.is_set():
                    return
                results[i].append(work(client))
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=loop, args=(i, c), daemon=True, name=f"race-{i}")
        for i, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        stop.set()
        for t in threads:
            t.join(5)
        raise TimeoutError(f"in_threads: not done within timeout={timeout:g} s")
    if errors:
        raise errors[0]
    return results


def server_usec_per_call(
    client: redis.Redis,
    command: str,
    fn: Callable[[], object],
    *,
    calls: int = 20,
    batches: int = 11,
) -> float:
    """The server's own time per ``command``, in µs: median over batches.

    Each batch calls ``fn()`` ``calls`` times and reads ``INFO commandstats``
    before and after; the server's microseconds for ``command`` divided by
    its calls in between is that batch's figure. The median of the batches
    shrugs off a batch in which the server process was descheduled. It counts
    executing the command only: not reading, parsing or writing.

    Raises:
        ValueError: ``fn`` made no ``command`` call (or another client's calls
            were counted: the server's counters are server-wide).
    """
    check_name("command", command)
    check_callable("fn", fn)
    check_count("calls", calls, max=1_000_000)
    check_count("batches", batches, max=10_000)
    field = f"cmdstat_{command.lower()}"

    def read() -> tuple[int, int]:
        stat = client.info("commandstats").get(field, {"calls": 0, "usec": 0})
        return int(stat["calls"]), int(stat["usec"])

    figures = []
    for _ in range(batches):
        calls0, usec0 = read()
        for _ in range(calls):
            fn()
        calls1, usec1 = read()
        if calls1 - calls0 <= 0:
            raise ValueError(f"fn made no {command!r} call (INFO {field} unchanged)")
        figures.append((usec1 - usec0) / (calls1 - calls0))
    return float(statistics.median(figures))


def sample(
    fn: Callable[[], C], *, seconds: float, every: float
) -> tuple[list[float], list[C]]:
    """Call ``fn()`` every ``every`` seconds for ``seconds``: (times, values).

    Times are seconds since the first call.
    """
    check_callable("fn", fn)
    check_seconds("seconds", seconds, max=3600)
    check_seconds("every", every, max=seconds)
    times: list[float] = []
    values: list[C] = []
    start = time.perf_counter()
    while True:
        now = time.perf_counter() - start
        times.append(now)
        values.append(fn())
        if now >= seconds:
            return times, values
        time.sleep(max(0.0, every * len(times) - (time.perf_counter() - start)))
