"""Split brain, Jepsen-style: a partitioned primary keeps acknowledging writes."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from labkit.core.args import check_choice, check_int, check_number, check_seconds
from labkit.lab.errors import ExperimentTimeoutError
from labkit.lab.persistence._failover import (
    SentinelEvent,
    SentinelEvents,
    WriteAttempt,
    classify,
)
from labkit.lab.persistence._group import ReplicatedGroup
from labkit.server import Server, no_retry

__all__ = ["MODES", "SplitBrainResult", "split_brain_test"]

#: How the client (or the primary) protects its writes during a partition.
MODES = ("async", "min-replicas", "wait")


@dataclass(frozen=True)
class SplitBrainResult:
    """One partition of a primary from its replicas and Sentinel, then the heal.

    Attributes:
        mode: ``"async"`` (plain writes), ``"min-replicas"`` (the primary
            refuses writes once no replica has acknowledged replication for
            ``min-replicas-max-lag`` seconds) or ``"wait"`` (each write is
            followed by ``WAIT 1 <ms>`` on the same connection, and counts as
            confirmed only if a replica acknowledged it).
        attempted: Writes the client sent to the old primary from the cut
            until it was demoted (or the run ended).
        acked: Of those, writes the old primary acknowledged ("OK").
        refused: Writes it refused (NOREPLICAS, READONLY...).
        dropped: Writes that got no answer (a timeout, or a connection the
            server closed, as a demotion does).
        confirmed: Acknowledged writes a replica confirmed (``wait`` mode);
            equal to ``acked`` in the other modes, where the client has
            nothing but the "OK" to go on.
        lost: Acknowledged writes missing after the old primary rejoined as a
            replica of the new one: it discarded them.
        lost_confirmed: Confirmed writes missing afterwards (what the client
            believed safe and was not).
        acked_after_heal: Acknowledged writes sent after the heal, before the
            demotion (the old primary still believed it was primary).
        latency_ms_p50, latency_ms_max: Per-write latency (answer or error),
            the median and the worst.
        promoted_s: Seconds from the cut to ``+switch-master``.
        demoted_s: Seconds from the heal to the old primary's demotion
            (``+convert-to-slave``), None if not seen.
        lost_seqs: Sequence numbers of the lost writes (for plots).
        attempts: Every write, in order (for plots).
        events: Sentinel's events during the run (for plots).
        cut_at, healed_at: ``time.monotonic()`` of the cut and the heal.
    """

    mode: str
    attempted: int
    acked: int
    refused: int
    dropped: int
    confirmed: int
    lost: int
    lost_confirmed: int
    acked_after_heal: int
    latency_ms_p50: float
    latency_ms_max: float
    promoted_s: float
    demoted_s: float | None
    cut_at: float
    healed_at: float
    lost_seqs: frozenset[int] = field(default=frozenset(), repr=False)
    attempts: list[WriteAttempt] = field(default_factory=list, repr=False)
    events: list[SentinelEvent] = field(default_factory=list, repr=False)


def split_brain_test(
    mode: str = "async",
    *,
    partition_s: float = 3.0,
    rate: float = 100.0,
    wait_ms: int = 100,
    max_lag_s: int = 1,
    down_after_ms: int = 500,
    timeout: float = 40.0,
) -> SplitBrainResult:
    """Partition a primary with one client from its replicas and Sentinel.

    A fresh :class:`ReplicatedGroup` (two replicas, a Sentinel, every data
    server behind a proxy) is started. A client connected straight to the
    primary writes ``SET sb:<i> <i>`` at ``rate`` per second. The primary's
    proxy is cut: the replicas and the Sentinel lose it, the client does not.
    Sentinel promotes a replica (the other follows it); the old primary,
    which hears nothing of it, goes on answering its client. After
    ``partition_s`` seconds (at least until the promotion) the partition
    heals; Sentinel notices the old primary still calls itself master and,
    some seconds later, demotes it: it resynchronises from the new primary
    and discards everything it acknowledged alone. The client writes until
    then. Every acknowledged key is then looked up on the new primary.

    Args:
        mode: One of :data:`MODES`.
        partition_s: Seconds the partition lasts at least (1 to 60).
        rate: Writes per second the client attempts (1 to 2000).
        wait_ms: ``WAIT 1 <wait_ms>`` after each write (``wait`` mode).
        max_lag_s: ``min-replicas-max-lag`` (``min-replicas`` mode).
        down_after_ms: Sentinel's ``down-after-milliseconds``.
        timeout: Bound on the promotion and on the demotion, each.

    Raises:
        ValueError, TypeError: Arguments out of range.
        ExperimentTimeoutError: No promotion, or no demotion, within ``timeout``.
    """
    check_choice("mode", mode, MODES)
    check_seconds("partition_s", partition_s, min=1, max=60, min_open=False)
    check_number("rate", rate, min=1, max=2000, unit="of writes per second")
    check_int("wait_ms", wait_ms, min=1, max=10_000)
    check_int("max_lag_s", max_lag_s, min=1, max=60)
    check_seconds("timeout", timeout, min=5, max=600, min_open=False)
    config = {}
    if mode == "min-replicas":
        config = {"min-replicas-to-write": "1", "min-replicas-max-lag": str(max_lag_s)}
    with ReplicatedGroup(
        2, sentinel=True, proxied=True, config=config, down_after_ms=down_after_ms
    ) as group:
        assert group.primary is not None and group.sentinel is not None
        old = group.primary
        client = old.client(
            retry=no_retry(),
            socket_timeout=max(2.0, 2 * wait_ms / 1000),
            single_connection_client=True,  # WAIT covers this connection's writes
        )
        with SentinelEvents(group.sentinel) as events, client:
            writer = _Writer(client, rate, "wait" if mode == "wait" else "", wait_ms)
            writer.write_for(0.3)  # a baseline, replicated before the cut
            client.wait(2, 5000)
            partition = group.isolate(old)
            partition.cut()
            cut = time.monotonic()
            first = len(writer.attempts)
            writer.write_until(
                lambda: events.first("+switch-master", cut) is not None,
                min_s=partition_s,
                timeout=timeout,
                what="Sentinel to promote a replica (+switch-master)",
                where=group.sentinel,
            )
            partition.heal()
            healed = time.monotonic()
            writer.write_until(
                lambda: _is_replica(old),
                min_s=0,
                timeout=timeout,
                what="the old primary to be demoted",
                where=old,
            )
            new = group.current_primary()
            _wait_in_sync(old, new, timeout)
            switch = events.first("+switch-master", cut)
            demoted = events.first("+convert-to-slave", healed)
        assert switch is not None
        return _tally(
            mode,
            writer.attempts[first:],
            new,
            cut,
            switch.at - cut,
            healed,
            None if demoted is None else demoted.at - healed,
            events,
        )


class _Writer:
    """Paced writes on one connection, each recorded as a WriteAttempt."""

    def __init__(
        self, client: redis.Redis, rate: float, wait: str, wait_ms: int
    ) -> None:
        self.client = client
        self.interval = 1.0 / rate
        self.wait = wait
        self.wait_ms = wait_ms
        self.attempts: list[WriteAttempt] = []
        self._next = time.monotonic()

    def one(self) -> None:
        i = len(self.attempts)
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self.interval, time.monotonic())
        sent = time.monotonic()
        confirmed = None
        try:
            self.client.set(f"sb:{i}", i)
            if self.wait:
                confirmed = self.client.wait(1, self.wait_ms) >= 1
        except redis.exceptions.RedisError as exc:
            took = time.monotonic() - sent
            words = " ".join(str(exc).split()[:6])
            self.attempts.append(
                WriteAttempt(i, sent, classify(exc), took, None, words)
            )
            return
        took = time.monotonic() - sent
        self.attempts.append(WriteAttempt(i, sent, "ok", took, confirmed))

    def write_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.one()

    def write_until(
        self,
        done: Callable[[], bool],
        *,
        min_s: float,
        timeout: float,
        what: str,
        where: Server,
    ) -> None:
        """Write until ``done()`` and at least ``min_s`` seconds passed."""
        start = time.monotonic()
        while True:
            self.one()
            took = time.monotonic() - start
            if took >= min_s and done():
                return
            if took > timeout:
                raise ExperimentTimeoutError(
                    f"gave up waiting for {what} after {timeout:g} s:\n"
                    f"{where.log_tail(10)}",
                    server=f"{where.host}:{where.port}",
                    waited=what,
                )


def _is_replica(server: Server) -> bool:
    try:
        with server.client(retry=no_retry(), socket_timeout=2) as probe:
            return bool(probe.info("replication")["role"] == "slave")
    except redis.exceptions.RedisError:  # a demotion may drop connections
        return False


def _wait_in_sync(old: Server, new: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with old.client() as probe, new.client() as primary:
        while True:
            info = probe.info("replication")
            target = int(primary.info("replication")["master_repl_offset"])
            if (
                info.get("master_link_status") == "up"
                and int(info.get("slave_repl_offset", -1)) >= target
            ):
                return
            if time.monotonic() > deadline:
                raise ExperimentTimeoutError(
                    f"the demoted primary on port {old.port} did not catch up "
                    f"within {timeout:g} s:\n{old.log_tail(10)}",
                    server=f"{old.host}:{old.port}",
                    waited="resync with the new primary",
                )
            time.sleep(0.05)


def _tally(
    mode: str,
    attempts: list[WriteAttempt],
    new: Server,
    cut: float,
    promoted: float,
    healed: float,
    demoted: float | None,
    events: SentinelEvents,
) -> SplitBrainResult:
    acked = [a for a in attempts if a.outcome == "ok"]
    with new.client() as r:
        present: list[object] = []
        for lo in range(0, len(acked), 1000):
            chunk = acked[lo : lo + 1000]
            present += r.mget([f"sb:{a.seq}" for a in chunk])
    missing = {a.seq for a, v in zip(acked, present, strict=True) if v is None}
    confirmed = [a for a in acked if a.confirmed is not False]
    latencies = [a.latency_s * 1000 for a in attempts] or [0.0]
    return SplitBrainResult(
        mode=mode,
        attempted=len(attempts),
        acked=len(acked),
        refused=sum(1 for a in attempts if a.outcome == "refused"),
        dropped=sum(1 for a in attempts if a.outcome in ("timeout", "down")),
        confirmed=len(confirmed),
        lost=len(missing),
        lost_confirmed=sum(1 for a in confirmed if a.seq in missing),
        acked_after_heal=sum(1 for a in acked if a.at >= healed),
        latency_ms_p50=statistics.median(latencies),
        latency_ms_max=max(latencies),
        promoted_s=promoted,
        demoted_s=demoted,
        cut_at=cut,
        healed_at=healed,
        lost_seqs=frozenset(missing),
        attempts=attempts,
        events=list(events.events),
    )
