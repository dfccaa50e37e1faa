"""A Sentinel failover under a stream of writes, and Sentinel's own event stream."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

import redis

from labkit.core.args import check_int, check_seconds
from labkit.core.listen import Listener, as_text
from labkit.lab.errors import ExperimentTimeoutError
from labkit.lab.persistence._group import ReplicatedGroup, frozen
from labkit.server import Sentinel, Server, no_retry

__all__ = [
    "FailoverResult",
    "SentinelEvent",
    "SentinelEvents",
    "WriteAttempt",
    "classify",
    "failover_test",
]


class WriteAttempt(NamedTuple):
    """One write an experiment's client tried.

    Attributes:
        seq: The write's number (its key is ``<prefix><seq>``).
        at: When it was sent (``time.monotonic()``).
        outcome: ``"ok"`` (acknowledged), ``"refused"`` (an error reply:
            READONLY, NOREPLICAS...), ``"timeout"`` (no answer within the
            socket timeout) or ``"down"`` (connection refused or reset).
        latency_s: Seconds from sending to the answer or the error.
        confirmed: For writes followed by ``WAIT``: True if a replica
            acknowledged it in time; None when no ``WAIT`` was issued.
        error: The error's first words ("" when acknowledged).
    """

    seq: int
    at: float
    outcome: str
    latency_s: float
    confirmed: bool | None = None
    error: str = ""


def classify(exc: BaseException) -> str:
    """The outcome name for a failed write: refused, timeout or down."""
    if isinstance(exc, redis.exceptions.TimeoutError):
        return "timeout"
    if isinstance(exc, redis.exceptions.ConnectionError):
        return "down"
    return "refused"


class SentinelEvent(NamedTuple):
    """One message of Sentinel's event stream.

    Attributes:
        at: When it arrived (``time.monotonic()``).
        channel: The event, e.g. ``"+sdown"``, ``"+odown"``, ``"+switch-master"``.
        text: Its payload, e.g. ``"master labkit 127.0.0.1 40001"``.
    """

    at: float
    channel: str
    text: str


class SentinelEvents:
    """Record Sentinel's own event stream (``PSUBSCRIBE *`` on the Sentinel).

    Sentinel publishes every state change on a channel named after it:
    ``+sdown`` (this Sentinel thinks an instance is down), ``+odown`` (enough
    Sentinels agree: the quorum), ``+try-failover``, ``+selected-slave``,
    ``+promoted-slave``, ``+switch-master`` (clients must move),
    ``+convert-to-slave`` (a returning old primary is demoted)... One
    :class:`labkit.core.listen.Listener` thread reads them.

    Args:
        sentinel: The Sentinel to listen to.
        pattern: The channels to record (``"*"``: all of them).
    """

    def __init__(self, sentinel: Sentinel, pattern: str = "*") -> None:
        if not isinstance(sentinel, Sentinel):
            raise TypeError(f"sentinel={sentinel!r}: must be a labkit Sentinel")
        self.sentinel = sentinel
        self.events: list[SentinelEvent] = []
        self._lock = threading.Lock()
        self._client = sentinel.client(socket_timeout=5, retry=no_retry())
        self.listener = Listener(
            self._client,
            patterns=[pattern],
            on_message=self._record,
            name="labkit-sentinel-events",
        )

    def _record(self, msg: dict[str, Any]) -> None:
        event = SentinelEvent(
            time.monotonic(), str(as_text(msg["channel"])), str(as_text(msg["data"]))
        )
        with self._lock:
            self.events.append(event)

    def start(self) -> SentinelEvents:
        """Subscribe and start recording (returns once subscribed)."""
        self.listener.start()
        return self

    def stop(self) -> None:
        """Stop the listener thread and close its connection."""
        self.listener.stop()
        self._client.close()

    def first(self, channel: str, after: float = 0.0) -> SentinelEvent | None:
        """The first ``channel`` event at or after ``after`` (monotonic), if any."""
        with self._lock:
            return next(
                (e for e in self.events if e.channel == channel and e.at >= after),
                None,
            )

    def __enter__(self) -> SentinelEvents:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class FailoverResult:
    """One Sentinel failover under a stream of writes.

    Attributes:
        acked: Writes acknowledged (by the old primary, then the new one).
        lost: Acknowledged writes missing on the new primary afterwards.
        unreplicated: Writes acknowledged while the replica was cut off
            (asynchronous replication had not delivered them at the kill).
        behind: Acknowledged writes the replica did not hold when it was
            last checked before the kill (read on the replica itself). Only
            these can be lost: ``lost <= behind`` always holds, whatever the
            timing, while ``lost == 0`` without a partition is only likely.
        downtime_s: Seconds from the kill to the first write accepted again.
        old_port, new_port: The primary before and after.
        killed_at: When the primary was killed (``time.monotonic()``).
        attempts: Every write tried after the kill, failed ones included.
    """

    acked: int
    lost: int
    unreplicated: int
    behind: int
    downtime_s: float
    old_port: int
    new_port: int
    killed_at: float = 0.0
    attempts: list[WriteAttempt] = field(default_factory=list, repr=False)


def failover_test(
    group: ReplicatedGroup,
    *,
    writes_before: int = 200,
    writes_after: int = 50,
    freeze_last: int = 0,
    timeout: float = 30.0,
) -> FailoverResult:
    """Kill the primary of ``group`` mid-stream and count what the switch lost.

    A client from Sentinel (no retries) writes ``SET fo:<i> <i>``; after
    ``writes_before`` acknowledgements the primary is SIGKILLed. With
    ``freeze_last > 0`` the first replica is cut off (frozen, its link
    dropped) for the last ``freeze_last`` writes before the kill, as in a
    partition: the primary acknowledges them, replication never delivers
    them, and the promoted replica does not have them. The writer keeps
    trying until the new primary accepts ``writes_after`` more writes, then
    every acknowledged key is checked.

    Just before the kill (before the freeze, with ``freeze_last``) the
    replica is asked which acknowledged keys it already holds: the primary
    hands each write to its replicas' sockets in the same event-loop pass as
    the reply, so on one machine the replica is rarely more than a write
    behind, but nothing guarantees it. ``behind`` counts the keys it lacked
    (plus the ``freeze_last`` writes it never got), a bound on ``lost``.
    With ``freeze_last`` the replica is first brought in sync by ``WAIT`` on
    the writer's own connection (``WAIT`` counts the writes of the connection
    that sends it; from a fresh connection it would return at once, proving
    nothing), so ``lost == behind == freeze_last``.

    Raises:
        ValueError, TypeError: Counts out of range; a group without Sentinel.
        ExperimentTimeoutError: No primary accepted writes within ``timeout`` seconds.
    """
    if not isinstance(group, ReplicatedGroup):
        raise TypeError(f"group={group!r}: must be a started ReplicatedGroup")
    if group.sentinel is None or group.primary is None:
        raise ValueError("group: start the ReplicatedGroup with sentinel=True")
    check_int("writes_before", writes_before, min=1, max=1_000_000)
    check_int("writes_after", writes_after, min=1, max=1_000_000)
    check_int("freeze_last", freeze_last, min=0, max=writes_before)
    check_seconds("timeout", timeout, max=600)
    old = group.current_primary()
    # One thread, so the pool lends this client the same connection every
    # time: its WAIT covers its own writes.
    client = group.sentinel.master_for(retry=no_retry(), socket_timeout=2)
    acked: list[int] = []
    for i in range(writes_before - freeze_last):
        client.set(f"fo:{i}", i)
        acked.append(i)
    if freeze_last:
        # Start the partition from a replica in sync, so that exactly the
        # writes made during it are the ones it lacks.
        client.wait(len(group.replicas), round(timeout * 1000))
    behind = _missing(group.replicas[0], acked) + freeze_last
    if freeze_last:
        # Freezing alone is not enough: the primary would still push the
        # writes into the frozen replica's socket buffer, and the replica
        # would apply them on waking. Dropping the link as well means they
        # are never sent, as in a network partition.
        with frozen(group.replicas[0]):
            with old.client() as admin:
                admin.client_kill_filter(_type="replica")
            for i in range(writes_before - freeze_last, writes_before):
                client.set(f"fo:{i}", i)
                acked.append(i)
            old.kill()
    else:
        old.kill()
    killed = time.monotonic()
    attempts: list[WriteAttempt] = []
    downtime, i = None, writes_before
    while len(acked) < writes_before + writes_after:
        if time.monotonic() - killed > timeout:
            raise ExperimentTimeoutError(
                f"no primary accepted writes within {timeout:g} s of the kill:\n"
                f"{group.sentinel.log_tail(10)}",
                server=f"{group.sentinel.host}:{group.sentinel.port}",
                waited="a promoted replica accepting writes",
            )
        sent = time.monotonic()
        try:
            client.set(f"fo:{i}", i)
        except redis.exceptions.RedisError as exc:
            took = time.monotonic() - sent
            attempts.append(
                WriteAttempt(i, sent, classify(exc), took, None, _first(exc))
            )
            time.sleep(0.05)  # no primary yet, or a replica not yet promoted
            continue
        attempts.append(WriteAttempt(i, sent, "ok", time.monotonic() - sent))
        downtime = downtime or time.monotonic() - killed
        acked.append(i)
        i += 1
    values = client.mget([f"fo:{k}" for k in acked])
    lost = sum(1 for v in values if v is None)
    new_port = group.current_primary().port
    client.close()
    return FailoverResult(
        len(acked),
        lost,
        freeze_last,
        behind,
        downtime or 0.0,
        old.port,
        new_port,
        killed,
        attempts,
    )


def _first(exc: BaseException, words: int = 6) -> str:
    return " ".join(str(exc).split()[:words])


def _missing(replica: Server, keys: list[int]) -> int:
    """How many of the keys ``fo:<k>`` the replica does not hold right now.

    A replica that does not answer (frozen, cut off) may lack any of them.
    """
    if not keys:
        return 0
    try:
        with replica.client(retry=no_retry(), socket_timeout=2) as probe:
            values = probe.mget([f"fo:{k}" for k in keys])
    except redis.exceptions.RedisError:
        return len(keys)
    return sum(1 for v in values if v is None)
