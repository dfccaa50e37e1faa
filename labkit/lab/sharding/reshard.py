"""Lab: live resharding of a :class:`labkit.server.Cluster`: grow it and move slots.

The moves are the ones ``redis-cli --cluster reshard`` makes, written out so
each step can be read and timed. For every slot:

1. the target is told ``CLUSTER SETSLOT <slot> IMPORTING <source-id>`` and the
   source ``CLUSTER SETSLOT <slot> MIGRATING <target-id>``;
2. ``CLUSTER GETKEYSINSLOT`` lists keys still on the source and ``MIGRATE``
   moves them in batches (each key atomically: stored on the target, then
   deleted from the source);
3. ``CLUSTER SETSLOT <slot> NODE <target-id>`` is sent to the target, the
   source, then every other master.

During step 2 the source still answers for keys it holds and replies
``ASK`` for the ones it no longer has; a cluster client follows that to the
target for one command. A multi-key command whose keys are split between the
two (some moved, some not) gets ``TRYAGAIN``: the client can only wait and
retry. After step 3 clients get ``MOVED`` and update their slot table. Stock
redis-py 8.1 can fail on an ``ASK`` to the brand-new master, which
:class:`ReshardSafeCluster` fixes.

Valkey 9.0+ also moves slots atomically (``CLUSTER MIGRATESLOTS``,
:func:`migrate_slots_atomic`, ``reshard(..., atomic=True)``): the data is
streamed in the background and ownership flips for all the slots at once, so
clients never see ``ASK`` or ``TRYAGAIN``.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from labkit.core.args import check_count, check_int
from labkit.core.clients import server_version, supports
from labkit.lab.sharding._live import (
    CHECKED_REDIS_PY,
    ReshardSafeCluster,
    add_known_master,
    safe_client,
)
from labkit.lab.sharding._migrate import (
    Member,
    count_keys,
    migrate_slots,
    migrate_slots_atomic,
    redirect_counts,
    runs,
)
from labkit.lab.sharding._topology import (
    add_master,
    master_labels,
    masters_by_id,
    node_id,
    slots_of,
)
from labkit.lab.sharding._traffic import LiveTraffic, TrafficReport
from labkit.server import Cluster, Server
from labkit.sharding import SLOTS

__all__ = [
    "CHECKED_REDIS_PY",
    "LiveTraffic",
    "Member",
    "ReshardReport",
    "ReshardSafeCluster",
    "TrafficReport",
    "add_known_master",
    "add_master",
    "count_keys",
    "master_labels",
    "masters_by_id",
    "migrate_slots",
    "migrate_slots_atomic",
    "node_id",
    "redirect_counts",
    "reshard",
    "runs",
    "safe_client",
    "slots_of",
]


class ReshardReport(NamedTuple):
    """What :func:`reshard` moved.

    Attributes:
        slots: Slots whose owner changed.
        keys: Keys migrated.
        seconds: Wall time.
    """

    slots: int
    keys: int
    seconds: float


def _members(cluster: Cluster, target: Server) -> dict[str, Member]:
    servers = masters_by_id(cluster)
    servers[node_id(target)] = target
    # A socket timeout longer than MIGRATE's own 5 s: a frozen node makes
    # the move fail within seconds instead of hanging.
    return {
        nid: Member(s, s.client(socket_timeout=10), nid) for nid, s in servers.items()
    }


def reshard(
    cluster: Cluster,
    target: Server,
    slots: int | None = None,
    *,
    sources: list[Server] | None = None,
    atomic: bool = False,
    batch: int = 100,
    slots_per_step: int = 64,
    progress: bool = False,
) -> ReshardReport:
    """Move ``slots`` slots to ``target``, taken evenly from the other masters.

    Args:
        cluster: The cluster; ``target`` must already be a member
            (:func:`add_master`).
        target: The node receiving slots.
        slots: How many; default is a fair share, ``SLOTS // masters``
            counting the target.
        sources: The masters to take them from (their highest slots); all
            the others by default.
        atomic: Use ``CLUSTER MIGRATESLOTS`` (:func:`migrate_slots_atomic`,
            one job per source) instead of the key-by-key
            :func:`migrate_slots`. Needs Valkey 9.0+.
        batch: Keys per ``MIGRATE`` (key by key only).
        slots_per_step: Slots moved together by :func:`migrate_slots`.
        progress: Show a tqdm progress bar (in slots).

    Raises:
        ValueError: ``slots`` is not between 1 and the slots the sources
            own, ``batch`` / ``slots_per_step`` out of range, or ``atomic``
            on a server without atomic slot migration.
    """
    check_count("batch", batch, max=10_000)
    check_count("slots_per_step", slots_per_step, max=SLOTS)
    owners = {k: v for k, v in slots_of(cluster).items() if v}
    members = _members(cluster, target)
    dest = next(m for m in members.values() if m.server is target)
    if atomic and not supports(dest.client, "atomic-slot-migration"):
        for member in members.values():
            member.client.close()
        raise ValueError(
            f"atomic=True: {server_version(dest.client)} has no CLUSTER "
            "MIGRATESLOTS (Valkey 9.0 or newer); use atomic=False"
        )
    wanted = None if sources is None else {s.port for s in sources}
    sources_ids = [
        nid
        for nid in owners
        if nid != dest.id and (wanted is None or members[nid].server.port in wanted)
    ]

    if not sources_ids:
        raise ValueError(f"sources={wanted!r}: no master among them owns slots")
    owned = sum(len(owners[s]) for s in sources_ids)
    total = SLOTS // (len(owners) + 1) if slots is None else slots
    check_int("slots", total, min=1, max=owned, what="a number of slots")
    step = SLOTS if atomic else slots_per_step
    steps: list[tuple[list[int], Member]] = []
    for i, sid in enumerate(sources_ids):
        share = total // len(sources_ids) + (i < total % len(sources_ids))
        mine = owners[sid][len(owners[sid]) - share :]
        for j in range(0, len(mine), step):
            steps.append((mine[j : j + step], members[sid]))
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="slots", unit="slot")
    start = time.perf_counter()
    keys = 0
    try:
        for group, source in steps:
            if atomic:
                keys += migrate_slots_atomic(group, source, dest)
                continue
            others = [m for m in members.values() if m not in (source, dest)]
            keys += migrate_slots(group, source, dest, others, batch=batch)
            if bar is not None:
                bar.update(len(group))
    finally:
        if bar is not None:
            bar.close()
        for member in members.values():
            member.client.close()
    return ReshardReport(total, keys, time.perf_counter() - start)
