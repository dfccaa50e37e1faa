"""Lab: the hand-off of an atomic slot migration, as the two servers log it.

Valkey 9's ``CLUSTER MIGRATESLOTS`` streams the slots to the target, then
hands them over: the source pauses client writes (on every slot it serves,
not only the moving ones), the target catches up, takes the slots and
announces it to the cluster, and the source unpauses when it hears that.
Both nodes log each step with a millisecond timestamp; :func:`handoff_times`
reads those lines back, and :class:`WriteProbe` keeps writing and reading one
key on the source meanwhile, so the notebook can see which operations waited.

The log lines are Valkey's own wording (``src/cluster_migrateslots.c``); a
server that words them differently makes :func:`handoff_times` raise.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from types import TracebackType
from typing import NamedTuple

import redis

from labkit.core.args import check_name
from labkit.errors import LabkitError
from labkit.server import Server

__all__ = ["Handoff", "WriteProbe", "handoff_times"]

_STAMP = re.compile(r"(\d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2}\.\d{3}) [*#.-] (.*)")

#: What each step's log line contains, and which node logs it.
_STEPS = {
    "snapshot": ("source", "Beginning snapshot of slot migration"),
    "paused": ("source", "Pausing writes"),
    "granted": ("source", "-> failover-granted"),
    "target_owns": ("target", "This node is now the owner of the slots"),
    "source_learns": ("source", "slots are now owned by target node"),
}


class Handoff(NamedTuple):
    """When each step of one atomic migration happened (``time.monotonic()``).

    Attributes:
        snapshot: The source forked a child to snapshot the slots.
        paused: The source paused client writes (the snapshot and the
            stream after it have reached the target).
        granted: The source granted the target's request to take over.
        target_owns: The target bumped its epoch and took the slots.
        source_learns: The source heard of it (a cluster-bus message),
            marked the job done and unpaused.
    """

    snapshot: float
    paused: float
    granted: float
    target_owns: float
    source_learns: float

    @property
    def pause(self) -> float:
        """Seconds the source's writes were paused."""
        return self.source_learns - self.paused


def _stamps(server: Server, job: str) -> list[tuple[float, str]]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if job not in line:
            continue
        m = _STAMP.search(line)
        if m:
            wall = datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S.%f").timestamp()
            out.append((wall, m.group(2)))
    return out


def handoff_times(source: Server, target: Server, job: str) -> Handoff:
    """The steps of migration ``job`` (its name) from both servers' logs.

    Log times are wall-clock milliseconds (truncated); they are converted to
    ``time.monotonic()`` with the offset between the two clocks now.

    Raises:
        LabkitError: A step's log line is missing.
    """
    check_name("job", job)
    offset = time.time() - time.monotonic()
    lines = {"source": _stamps(source, job), "target": _stamps(target, job)}
    found = {}
    for step, (node, text) in _STEPS.items():
        hit = next((t for t, msg in lines[node] if text in msg), None)
        if hit is None:
            raise LabkitError(
                f"migration {job}: no {node} log line containing {text!r} "
                f"(looked in {len(lines[node])} lines of that job)"
            )
        found[step] = hit - offset
    return Handoff(**found)


class WriteProbe:
    """Two threads on one server: one ``SET``s a key over and over, one ``GET``s it.

    Each on its own connection, so a write that waits does not hold the
    reads back. Every operation is recorded as ``(start, end, command)`` in
    ``time.monotonic()`` seconds (:attr:`rows`). A harness for timing only:
    it shows which operations waited while something happened on the server.
    """

    def __init__(self, server: Server, key: str) -> None:
        self.server, self.key = server, check_name("key", key)
        self.rows: list[tuple[float, float, str]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._ready = threading.Semaphore(0)
        self._threads = [
            threading.Thread(target=self._run, args=(command,), daemon=True)
            for command in ("SET", "GET")
        ]

    def _run(self, command: str) -> None:
        clock = time.monotonic
        with self.server.client(socket_timeout=30) as client:
            client.ping()
            self._ready.release()
            i = 0
            while not self._stop.is_set():
                args = (
                    (command, self.key, str(i))
                    if command == "SET"
                    else (command, self.key)
                )
                start = clock()
                try:
                    client.execute_command(*args)
                except redis.RedisError:
                    self.errors += 1
                self.rows.append((start, clock(), command))  # list.append: thread-safe
                i += 1

    def __enter__(self) -> WriteProbe:
        for thread in self._threads:
            thread.start()
        for _ in self._threads:
            self._ready.acquire(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def started_between(
        self, start: float, end: float, command: str
    ) -> list[tuple[float, float]]:
        """``(start, end)`` of the ``command`` operations begun in ``[start, end]``."""
        return [(s, e) for s, e, c in self.rows if c == command and start <= s <= end]
