"""Lab: ``MIGRATE`` of one big key, with both nodes watched by a ``PING`` loop each.

A key moves in one piece: the source serialises it and waits until the target
has stored it (``RESTORE``), and a Redis node runs one command at a time. So
while a big key moves, clients of the source wait the whole time and clients
of the target wait while it loads the key.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from labkit.core.args import check_name
from labkit.server import Server

__all__ = ["BlockedMove", "migrate_watched"]


class BlockedMove(NamedTuple):
    """One ``MIGRATE`` and what a ``PING`` felt meanwhile on each node.

    Attributes:
        seconds: Wall time of the ``MIGRATE``.
        source_worst: Slowest ``PING`` on the source while it ran, in seconds.
        target_worst: Slowest ``PING`` on the target while it ran, in seconds.
        pings: ``PING``s sent in all.
        source_busy: Seconds the source spent in the ``MIGRATE`` by its own
            count (``INFO commandstats``): unlike ``seconds``, no client-side
            scheduling delay in it.
        target_busy: Seconds the target spent storing the key
            (``RESTORE-ASKING``, or ``RESTORE`` outside a cluster), by its
            own count.
    """

    seconds: float
    source_worst: float
    target_worst: float
    pings: int
    source_busy: float = 0.0
    target_busy: float = 0.0


def _busy_usec(server: Server, *commands: str) -> int:
    """Microseconds ``server`` has spent in ``commands`` (``INFO commandstats``)."""
    with server.client(socket_timeout=10) as client:
        stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in commands)


def migrate_watched(
    source: Server, target: Server, key: str, *, password: str
) -> BlockedMove:
    """``MIGRATE`` ``key`` from ``source`` to ``target`` while two threads ``PING``.

    The key's slot must already be ``MIGRATING``/``IMPORTING`` between the two
    (in a cluster, the target accepts the key only then).
    """
    check_name("key", key)
    stop = threading.Event()
    worst = {"source": 0.0, "target": 0.0}
    count = [0]

    def ping(server: Server, name: str) -> None:
        with server.client(socket_timeout=60) as client:
            client.ping()
            ready.release()
            while not stop.is_set():
                started = time.monotonic()
                client.ping()
                worst[name] = max(worst[name], time.monotonic() - started)
                count[0] += 1
                time.sleep(0.001)

    ready = threading.Semaphore(0)
    threads = [
        threading.Thread(target=ping, args=(s, n), daemon=True)
        for s, n in ((source, "source"), (target, "target"))
    ]
    for thread in threads:
        thread.start()
    for _ in threads:
        ready.acquire(timeout=10)
    worst.update(source=0.0, target=0.0)  # only what happens during the move
    restore = ("restore-asking", "restore")
    busy_before = (_busy_usec(source, "migrate"), _busy_usec(target, *restore))
    try:
        with source.client(socket_timeout=120) as client:
            started = time.monotonic()
            client.execute_command(
                "MIGRATE", target.host, target.port, "", 0, 60_000,
                "AUTH2", "default", password, "KEYS", key,
            )  # fmt: skip
            seconds = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=70)
    source_busy = (_busy_usec(source, "migrate") - busy_before[0]) / 1e6
    target_busy = (_busy_usec(target, *restore) - busy_before[1]) / 1e6
    return BlockedMove(
        seconds, worst["source"], worst["target"], count[0], source_busy, target_busy
    )
