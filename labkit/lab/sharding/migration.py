"""Lab: key-by-key vs atomic slot migration, each under the same live traffic.

One run moves a set of slots from one master to another while a
:class:`~labkit.lab.sharding.reshard.LiveTraffic` process keeps writing and
reading, single keys and hash-tagged pairs, and reports what clients felt:
the ``ASK`` and ``TRYAGAIN`` replies the nodes sent (``INFO errorstats``), the
operations that failed, and the latency of operations before and during the
move.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NamedTuple

from redis.cluster import RedisCluster

from labkit.core.args import check_count, check_seconds
from labkit.core.clients import supports
from labkit.lab.sharding._migrate import (
    Member,
    migrate_slots,
    migrate_slots_atomic,
    redirect_counts,
)
from labkit.lab.sharding._topology import masters_by_id, node_id
from labkit.lab.sharding._traffic import LiveTraffic, TrafficReport
from labkit.server import Cluster, Server
from labkit.sharding import key_slot, tagged

__all__ = [
    "MigrationRun",
    "fill_tags",
    "migration_under_traffic",
    "pick_tags",
    "summarize_run",
]


class MigrationRun(NamedTuple):
    """What clients felt while slots moved.

    Attributes:
        method: ``"key by key"`` or ``"atomic"``.
        slots: Slots moved.
        keys: Keys they held when the move started.
        seconds: Wall time of the move.
        ask: ``ASK`` replies sent by the nodes during the move.
        tryagain: ``TRYAGAIN`` replies sent during the move.
        failed: Client operations that raised (or read a wrong value),
            during the whole traffic run.
        p99_before_ms: p99 latency of operations in the second before.
        p99_during_ms: p99 latency of operations started during the move.
        max_during_ms: Slowest operation started during the move.
        ops_during: Operations started during the move.
        started, ended: ``time.monotonic()`` at the start and end of the
            move (the clock of :attr:`TrafficReport.samples`).
        traffic: The full traffic report.
    """

    method: str
    slots: int
    keys: int
    seconds: float
    ask: int
    tryagain: int
    failed: int
    p99_before_ms: float
    p99_during_ms: float
    max_during_ms: float
    ops_during: int
    started: float
    ended: float
    traffic: TrafficReport


def pick_tags(slots: Iterable[int], n: int, *, prefix: str = "g") -> list[str]:
    """``n`` hash-tag values (``g0``, ``g17``...) whose slots are in ``slots``.

    Found by counting up, so the same slots always give the same tags.
    """
    check_count("n", n, max=100_000)
    wanted = set(slots)
    out: list[str] = []
    i = 0
    while len(out) < n:
        if i > 10_000_000:
            raise ValueError(f"slots: only {len(out)} of {n} tags found in them")
        tag = f"{prefix}{i}"
        if key_slot(tag) in wanted:
            out.append(tag)
        i += 1
    return out


def fill_tags(
    client: RedisCluster, tags: Iterable[str], keys_per_tag: int, value_size: int = 100
) -> int:
    """Write ``keys_per_tag`` keys under each tag (``{<tag>}:<i>``); keys written."""
    check_count("keys_per_tag", keys_per_tag, max=1_000_000)
    check_count("value_size", value_size, max=1_000_000)
    value = "x" * value_size
    total = 0
    for tag in tags:
        keys = [tagged(tag, i) for i in range(keys_per_tag)]
        for i in range(0, len(keys), 500):
            client.mset_nonatomic(dict.fromkeys(keys[i : i + 500], value))
        total += len(keys)
    return total


def _member(server: Server) -> Member:
    return Member(server, server.client(socket_timeout=10), node_id(server))


def migration_under_traffic(
    cluster: Cluster,
    slots: list[int],
    source: Server,
    target: Server,
    *,
    atomic: bool,
    groups: list[str],
    baseline: float = 1.0,
    batch: int = 10,
) -> MigrationRun:
    """Move ``slots`` from ``source`` to ``target`` under live traffic; measure it.

    Args:
        cluster: The cluster (``target`` already a member).
        slots: Slots ``source`` owns.
        source, target: The masters.
        atomic: ``CLUSTER MIGRATESLOTS`` (Valkey 9.0+) instead of the
            key-by-key ``MIGRATE`` loop.
        groups: Hash-tag values for the traffic's multi-key pairs (pick them
            in ``slots`` to exercise the moving slots).
        baseline: Seconds of traffic measured before the move starts.
        batch: Keys per ``MIGRATE`` (key by key only); small batches leave
            a slot's keys split between the nodes for longer.

    Raises:
        ValueError: ``atomic`` on a server without atomic slot migration.
    """
    check_seconds("baseline", baseline, max=60)
    src, dst = _member(source), _member(target)
    others: list[Member] = []
    try:
        if atomic and not supports(src.client, "atomic-slot-migration"):
            raise ValueError(
                "atomic=True: this server has no CLUSTER MIGRATESLOTS (Valkey 9.0+)"
            )
        others += [
            _member(s)
            for s in masters_by_id(cluster).values()
            if s.port not in (source.port, target.port)
        ]
        method = "atomic" if atomic else "key by key"
        prefix = f"lab:mig:{method[:3]}"
        with LiveTraffic(cluster, prefix=prefix, groups=groups) as live:
            time.sleep(baseline)
            before, t0 = redirect_counts(cluster), time.monotonic()
            if atomic:
                keys = migrate_slots_atomic(slots, src, dst)
            else:
                keys = migrate_slots(slots, src, dst, others, batch=batch)
            t1, after = time.monotonic(), redirect_counts(cluster)
            time.sleep(0.2)
            report = live.stop()
    finally:
        for m in (src, dst, *others):
            m.client.close()
    return summarize_run(
        method, len(slots), keys, (t0, t1), before, after, report, baseline=baseline
    )


def summarize_run(
    method: str,
    slots: int,
    keys: int,
    window: tuple[float, float],
    before: dict[str, int],
    after: dict[str, int],
    report: TrafficReport,
    *,
    baseline: float = 1.0,
) -> MigrationRun:
    """One :class:`MigrationRun` row from what was measured around a move.

    Args:
        method: A label (``"key by key"``, ``"atomic"``).
        slots, keys: Slots moved and the keys they held.
        window: ``(t0, t1)``, ``time.monotonic()`` at the move's start and end.
        before, after: :func:`~labkit.lab.sharding.reshard.redirect_counts`
            read at ``t0`` and ``t1``.
        report: The traffic that ran around the move.
        baseline: Seconds of traffic before ``t0`` that count as "before".
    """
    t0, t1 = window
    inside = (report.samples[:, 0] >= t0) & (report.samples[:, 0] < t1)
    during = report.latency(t0, t1) if inside.any() else None
    return MigrationRun(
        method=method,
        slots=slots,
        keys=keys,
        seconds=t1 - t0,
        ask=after["ASK"] - before["ASK"],
        tryagain=after["TRYAGAIN"] - before["TRYAGAIN"],
        failed=report.failed,
        p99_before_ms=report.latency(t0 - baseline, t0).p99_ms,
        p99_during_ms=during.p99_ms if during else float("nan"),
        max_during_ms=float(report.samples[inside, 1].max(initial=0.0) * 1000),
        ops_during=int(inside.sum()),
        started=t0,
        ended=t1,
        traffic=report,
    )
