"""Round trips through the fault-injecting proxy, and pipelining curves."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import redis

from labkit.core.args import check_callable, check_count
from labkit.lab.basics._wire import _tcp_kwargs
from labkit.lab.proxy import Proxy

__all__ = ["client_via", "median_ping_ms", "pipeline_curves", "proxy_for"]

C = TypeVar("C")


def proxy_for(client: redis.Redis, **kwargs: Any) -> Proxy:
    """A started :class:`Proxy` in front of the server ``client`` talks to.

    ``kwargs`` go to :class:`Proxy` (``seed=``, ``buffer_bytes=``...). Stop it
    with ``proxy.stop()`` (or use it as a context manager).
    """
    kw = _tcp_kwargs(client)
    return Proxy(kw["host"], int(kw.get("port", 6379)), **kwargs).start()


def client_via(client: redis.Redis, proxy: Proxy, **overrides: Any) -> redis.Redis:
    """A client with ``client``'s settings (password, db, timeouts, decoding)
    that connects through ``proxy``; ``overrides`` replace any of them.

    Close it with ``.close()``, which closes its own connection pool too.
    """
    if not isinstance(proxy, Proxy):
        raise TypeError(f"proxy={proxy!r}: expected a labkit.lab.proxy.Proxy")
    kw = {**_tcp_kwargs(client), "host": proxy.host, "port": proxy.port, **overrides}
    pool = redis.ConnectionPool(connection_class=redis.Connection, **kw)
    return redis.Redis.from_pool(pool)


def median_ping_ms(client: redis.Redis, n: int = 50) -> float:
    """Median round trip of ``n`` PINGs, in milliseconds (after one untimed)."""
    check_count("n", n, max=1_000_000)
    client.ping()  # connect first: the handshake is not a round trip of interest
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def pipeline_curves(
    run: Callable[[C, int], object],
    clients: Mapping[str, C],
    batch_sizes: Sequence[int],
    *,
    rounds: int = 4,
    calls: int = 5,
    progress: Callable[[list[int]], Iterable[int]] | None = None,
) -> dict[str, dict[int, float]]:
    """Median seconds per command of ``run(client, batch)``, per client and batch.

    Args:
        run: Sends ``batch`` commands with ``client`` (the notebook's own
            pipelining function) and returns when all replies are in.
        clients: ``{label: client}``, e.g. direct and through proxies.
        batch_sizes: Commands per call; include 1 as the baseline. They are
            measured in the order given, smallest first being best: on a busy
            machine a process that has just used the CPU for a large batch
            waits longer to be scheduled after each of its next round trips.
        rounds: For each batch size, the clients take turns ``rounds`` times,
            so a burst of load from elsewhere on the machine hits them alike.
        calls: Consecutive timed calls per turn. A point's figure is the
            median of its ``rounds * calls`` calls.
        progress: Wraps the list of batch sizes, e.g. ``tqdm``.

    Returns:
        ``{label: {batch: median seconds per command}}``.
    """
    check_callable("run", run, signature="run(client, batch)")
    if not isinstance(clients, Mapping) or not clients:
        raise TypeError(f"clients={clients!r}: must be a non-empty {{label: client}}")
    if isinstance(batch_sizes, str | bytes) or not isinstance(batch_sizes, Sequence):
        raise TypeError(f"batch_sizes={batch_sizes!r}: must be a list of ints")
    if not batch_sizes:
        raise ValueError("batch_sizes=[]: must list at least one batch size")
    sizes = [check_count("batch_sizes item", b, max=1_000_000) for b in batch_sizes]
    check_count("rounds", rounds, max=100_000)
    check_count("calls", calls, max=100_000)
    if progress is not None:
        check_callable("progress", progress, signature="progress(list) -> iterable")
    samples: dict[str, dict[int, list[float]]] = {
        label: {b: [] for b in sizes} for label in clients
    }
    for client in clients.values():  # connect and warm up, untimed
        run(client, sizes[0])
    for b in progress(sizes) if progress else sizes:
        for _ in range(rounds):
            for label, client in clients.items():
                for _ in range(calls):
                    start = time.perf_counter()
                    run(client, b)
                    samples[label][b].append((time.perf_counter() - start) / b)
    return {
        label: {b: statistics.median(s) for b, s in per_batch.items()}
        for label, per_batch in samples.items()
    }
