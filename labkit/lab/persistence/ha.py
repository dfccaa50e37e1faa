"""High availability: a primary with replicas, WAIT, and a Sentinel failover run."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import redis

from labkit.server import Sentinel, Server, no_retry, replica_config

__all__ = ["FailoverResult", "ReplicatedGroup", "failover_test", "frozen"]


class ReplicatedGroup:
    """A primary, ``replicas`` replicas of it and, optionally, one Sentinel.

    Args:
        replicas: Number of replicas (>= 1).
        sentinel: Also start a Sentinel watching the primary.
        down_after_ms: Sentinel's ``down-after-milliseconds``.
        failover_timeout_ms: Sentinel's ``failover-timeout``.
        config: Extra config for every data server (e.g. a persistence policy).

    All servers share one password and ``masterauth``, so any of them can be
    promoted and the others follow. Use as a context manager; everything is
    stopped and removed on exit.
    """

    def __init__(
        self,
        replicas: int = 1,
        *,
        sentinel: bool = False,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        config: dict[str, str] | None = None,
    ) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas={replicas!r}: expected an int >= 1")
        self.password = secrets.token_hex(16)
        self._config = dict(config or {})
        self._n = replicas
        self._want_sentinel = sentinel
        self._sentinel_args = (down_after_ms, failover_timeout_ms)
        self.primary: Server | None = None
        self.replicas: list[Server] = []
        self.sentinel: Sentinel | None = None

    def start(self, timeout: float = 30.0) -> ReplicatedGroup:
        """Start every server and wait until each replica is in sync."""
        pw = self.password
        # A diskless full sync waits 5 s (by default) for more replicas to
        # share it; the lab's replicas all connect at once, so don't wait.
        base = {"repl-diskless-sync-delay": "0", **self._config}
        try:
            self.primary = Server(
                config={**base, "masterauth": pw}, password=pw
            ).start()
            for _ in range(self._n):
                cfg = {**base, **replica_config(self.primary)}
                self.replicas.append(Server(config=cfg, password=pw).start())
            self.wait_synced(timeout)
            if self._want_sentinel:
                down, fo = self._sentinel_args
                self.sentinel = Sentinel(
                    self.primary, down_after_ms=down, failover_timeout_ms=fo
                ).start()
        except BaseException:
            self.close()
            raise
        return self

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Block until every replica's link to its primary is up."""
        deadline = time.monotonic() + timeout
        for replica in self.replicas:
            probe = replica.client()
            while probe.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"replica on port {replica.port} not in sync after "
                        f"{timeout:g} s:\n{replica.log_tail(10)}"
                    )
                time.sleep(0.02)

    def close(self) -> None:
        """Stop and remove every server of the group."""
        for server in [self.sentinel, *self.replicas, self.primary]:
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()

    def __enter__(self) -> ReplicatedGroup:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def frozen(server: Server) -> Iterator[None]:
    """SIGSTOP ``server`` for the ``with`` block, SIGCONT after (always).

    A frozen process keeps its sockets open but answers nothing: to the
    others it looks like a stalled machine or a network partition.
    """
    pid = server.pid
    if pid is None:
        raise ValueError(f"server={server!r} is not running")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


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
    """

    acked: int
    lost: int
    unreplicated: int
    behind: int
    downtime_s: float
    old_port: int
    new_port: int


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
    With ``freeze_last`` the replica is first brought in sync (``WAIT``), so
    ``lost == behind == freeze_last``.
    """
    if group.sentinel is None or group.primary is None:
        raise ValueError("group: start the ReplicatedGroup with sentinel=True")
    if not 0 <= freeze_last <= writes_before:
        raise ValueError(f"freeze_last={freeze_last!r}: expected 0..{writes_before}")
    client = group.sentinel.master_for(retry=no_retry(), socket_timeout=2)
    old_port = group.primary.port
    acked: list[int] = []
    for i in range(writes_before - freeze_last):
        client.set(f"fo:{i}", i)
        acked.append(i)
    if freeze_last:
        # Start the partition from a replica in sync, so that exactly the
        # writes made during it are the ones it lacks.
        group.primary.client().wait(1, round(timeout * 1000))
    behind = _missing(group.replicas[0], acked) + freeze_last
    if freeze_last:
        # Freezing alone is not enough: the primary would still push the
        # writes into the frozen replica's socket buffer, and the replica
        # would apply them on waking. Dropping the link as well means they
        # are never sent, as in a network partition.
        with frozen(group.replicas[0]):
            group.primary.client().client_kill_filter(_type="replica")
            for i in range(writes_before - freeze_last, writes_before):
                client.set(f"fo:{i}", i)
                acked.append(i)
            group.primary.kill()
    else:
        group.primary.kill()
    killed = time.monotonic()
    downtime, i = None, writes_before
    while len(acked) < writes_before + writes_after:
        if time.monotonic() - killed > timeout:
            raise TimeoutError(f"no primary accepted writes within {timeout:g} s")
        try:
            client.set(f"fo:{i}", i)
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ReadOnlyError,
        ):
            time.sleep(0.05)  # no primary yet, or a replica not yet promoted
            continue
        downtime = downtime or time.monotonic() - killed
        acked.append(i)
        i += 1
    values = client.mget([f"fo:{k}" for k in acked])
    lost = sum(1 for v in values if v is None)
    new_port = group.sentinel.master_address()[1]  # type: ignore[index]
    return FailoverResult(
        len(acked), lost, freeze_last, behind, downtime or 0.0, old_port, new_port
    )


def _missing(replica: Server, keys: list[int]) -> int:
    """How many of the keys ``fo:<k>`` the replica does not hold right now."""
    if not keys:
        return 0
    values = replica.client(retry=no_retry()).mget([f"fo:{k}" for k in keys])
    return sum(1 for v in values if v is None)
