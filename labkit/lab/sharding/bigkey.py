"""Lab: ``MIGRATE`` of one big key, with both nodes watched by a ``PING`` loop each.

A key moves in one piece: the source serialises it and waits until the target
has stored it (``RESTORE``), and a Redis node runs one command at a time. So
while a big key moves, clients of the source wait the whole time and clients
of the target wait while it loads the key.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import NamedTuple

from labkit.core.args import check_name
from labkit.server import Server

__all__ = ["BlockedMove", "PingWatch", "busy_usec", "migrate_watched"]


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


class PingWatch:
    """A thread that ``PING``s one server about every millisecond; the slowest reply.

    A harness for timing only: use it as a context manager around whatever
    might block the server, then read :attr:`worst` (seconds) and
    :attr:`pings`. The slowest ``PING`` counts only from the moment the
    ``with`` block is entered.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.worst = 0.0
        self.pings = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.server.client(socket_timeout=60) as client:
            client.ping()
            self._ready.set()
            while not self._stop.is_set():
                started = time.monotonic()
                client.ping()
                self.worst = max(self.worst, time.monotonic() - started)
                self.pings += 1
                time.sleep(0.001)

    def __enter__(self) -> PingWatch:
        self._thread.start()
        self._ready.wait(timeout=10)
        self.worst, self.pings = 0.0, 0  # only what happens inside the block
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=70)


def busy_usec(server: Server, *commands: str) -> int:
    """Microseconds ``server`` has spent in ``commands`` (``INFO commandstats``)."""
    with server.client(socket_timeout=10) as client:
        stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in commands)


def migrate_watched(
    source: Server, target: Server, key: str, *, password: str
) -> BlockedMove:
    """``MIGRATE`` ``key`` from ``source`` to ``target`` while both are ``PING``ed.

    The key's slot must already be ``MIGRATING``/``IMPORTING`` between the two
    (in a cluster, the target accepts the key only then).
    """
    check_name("key", key)
    restore = ("restore-asking", "restore")
    busy_before = (busy_usec(source, "migrate"), busy_usec(target, *restore))
    with (
        PingWatch(source) as on_source,
        PingWatch(target) as on_target,
        source.client(socket_timeout=120) as client,
    ):
        started = time.monotonic()
        client.execute_command(
            "MIGRATE", target.host, target.port, "", 0, 60_000,
            "AUTH2", "default", password, "KEYS", key,
        )  # fmt: skip
        seconds = time.monotonic() - started
    source_busy = (busy_usec(source, "migrate") - busy_before[0]) / 1e6
    target_busy = (busy_usec(target, *restore) - busy_before[1]) / 1e6
    return BlockedMove(
        seconds,
        on_source.worst,
        on_target.worst,
        on_source.pings + on_target.pings,
        source_busy,
        target_busy,
    )
