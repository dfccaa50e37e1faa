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
target for one command. After step 3 clients get ``MOVED`` and update their
slot table. A cluster client should see no failure at all (:class:`LiveTraffic`
counts them); stock redis-py 8.1 can still fail on an ``ASK`` to the brand-new
master, which :class:`ReshardSafeCluster` fixes.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import redis

from labkit.core.args import check_count, check_int
from labkit.errors import ClusterStateError, MoveError
from labkit.lab.sharding._live import (
    CHECKED_REDIS_PY,
    LiveTraffic,
    ReshardSafeCluster,
    TrafficReport,
    add_known_master,
    safe_client,
)
from labkit.server import Cluster, Server
from labkit.sharding import SLOTS, cluster_nodes

__all__ = [
    "CHECKED_REDIS_PY",
    "LiveTraffic",
    "Member",
    "ReshardReport",
    "ReshardSafeCluster",
    "TrafficReport",
    "add_known_master",
    "add_master",
    "masters_by_id",
    "migrate_slots",
    "node_id",
    "reshard",
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


def node_id(server: Server) -> str:
    """The 40-character cluster node id of ``server``."""
    with server.client() as client:
        return str(client.execute_command("CLUSTER MYID"))


def masters_by_id(cluster: Cluster) -> dict[str, Server]:
    """``{node id: Server}`` for every node that is a master and serves slots."""
    by_port = {n.port: n for n in cluster.nodes}
    with cluster.nodes[0].client() as client:
        view = cluster_nodes(client)
    return {
        info.id: by_port[info.port]
        for info in view
        if info.is_master and info.slots and info.port in by_port
    }


def slots_of(cluster: Cluster) -> dict[str, list[int]]:
    """``{node id: sorted slots}`` as the first node sees them."""
    with cluster.nodes[0].client() as client:
        return {info.id: info.slot_list() for info in cluster_nodes(client)}


def add_master(cluster: Cluster, *, timeout: float = 10.0) -> Server:
    """Start an empty master, ``CLUSTER MEET`` it, wait until every node knows it.

    Also waits for the new node's own ``cluster_state:ok`` (it has learnt who
    owns every slot): before that, a ``MIGRATE`` to it fails with
    ``CLUSTERDOWN``.

    Returns:
        The new node (it owns no slots yet; :func:`reshard` gives it some).

    Raises:
        ClusterStateError: Some node did not learn of it within ``timeout``
            seconds.
    """
    node = cluster.new_node()
    cluster.meet(node)
    new_id = node_id(node)
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for member in cluster.nodes:
            with member.client() as client:
                view = cluster_nodes(client)
            if not any(v.id == new_id and v.usable for v in view):
                pending.append(member.port)
        with node.client() as client:
            state = client.execute_command("CLUSTER INFO")["cluster_state"]
        if not pending and state == "ok":
            return node
        if time.monotonic() > deadline:
            raise ClusterStateError(
                f"new node {node.port}: not known to nodes {pending} or its "
                f"cluster_state={state!r} after {timeout:g} s",
                what="new master known to every node",
                nodes=[f"{n.host}:{n.port}" for n in cluster.nodes],
                timeout=timeout,
            )
        time.sleep(0.05)


class Member(NamedTuple):
    """A master taking part in a reshard: its server, one open client, its id."""

    server: Server
    client: redis.Redis
    id: str


def _members(cluster: Cluster, target: Server) -> dict[str, Member]:
    servers = masters_by_id(cluster)
    servers[node_id(target)] = target
    # A socket timeout longer than MIGRATE's own 5 s: a frozen node makes
    # the move fail within seconds instead of hanging.
    return {
        nid: Member(s, s.client(socket_timeout=10), nid) for nid, s in servers.items()
    }


def _setslot(member: Member, slots: list[int], *args: str) -> None:
    # One pipeline per node: the node saves its cluster config (an fsync)
    # once per batch instead of once per slot, about 100x faster on a disk.
    pipe = member.client.pipeline(transaction=False)
    for slot in slots:
        pipe.execute_command("CLUSTER SETSLOT", slot, *args)
    pipe.execute()


def migrate_slots(
    slots: list[int],
    source: Member,
    target: Member,
    others: list[Member],
    *,
    batch: int = 100,
) -> int:
    """Move ``slots`` from ``source`` to ``target`` while clients keep working.

    Each slot goes through the same steps as if moved alone (importing,
    migrating, keys, new owner); doing them for a group of slots at a time
    only batches the round trips.

    Args:
        slots: Slots owned by ``source``, 0 to 16383.
        source, target: The current and the new owner.
        others: The remaining masters, told the new owner at the end.
        batch: Keys per ``MIGRATE``.

    Returns:
        Keys migrated.
    """
    _setslot(target, slots, "IMPORTING", source.id)
    _setslot(source, slots, "MIGRATING", target.id)
    # Every node has requirepass: MIGRATE must log in to the target itself.
    password = target.server.password
    auth = ("AUTH2", "default", password) if password else ()
    host, port = target.server.host, target.server.port
    src = source.client
    moved = 0
    try:
        for slot in slots:
            while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, batch):
                src.execute_command(
                    "MIGRATE", host, port, "", 0, 5000, *auth, "KEYS", *keys
                )
                moved += len(keys)
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
        raise MoveError(
            f"slot migration {source.server.port} -> {port} stopped after {moved} "
            f"keys: {type(exc).__name__}: {exc}. The slots stay half-moved "
            "(MIGRATING/IMPORTING): clients still reach every key through ASK; "
            "run the migration again to finish it.",
            source=f"{source.server.host}:{source.server.port}",
            target=f"{host}:{port}",
            moved=moved,
        ) from exc
    # Target first: once it owns the slot it stops sending clients back.
    for member in (target, source, *others):
        _setslot(member, slots, "NODE", target.id)
    return moved


def reshard(
    cluster: Cluster,
    target: Server,
    slots: int | None = None,
    *,
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
        batch: Keys per ``MIGRATE``.
        slots_per_step: Slots moved together by :func:`migrate_slots`.
        progress: Show a tqdm progress bar (in slots).

    Raises:
        ValueError: ``slots`` is not between 1 and the slots the others own,
            or ``batch`` / ``slots_per_step`` < 1.
    """
    check_count("batch", batch, max=10_000)
    check_count("slots_per_step", slots_per_step, max=SLOTS)
    owners = {k: v for k, v in slots_of(cluster).items() if v}
    members = _members(cluster, target)
    dest = next(m for m in members.values() if m.server is target)
    sources = [nid for nid in owners if nid != dest.id]
    owned = sum(len(owners[s]) for s in sources)
    total = SLOTS // (len(sources) + 1) if slots is None else slots
    check_int("slots", total, min=1, max=owned, what="a number of slots")
    steps: list[tuple[list[int], Member]] = []
    for i, sid in enumerate(sources):
        share = total // len(sources) + (i < total % len(sources))
        mine = owners[sid][len(owners[sid]) - share :]
        for j in range(0, len(mine), slots_per_step):
            steps.append((mine[j : j + slots_per_step], members[sid]))
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="slots", unit="slot")
    start = time.perf_counter()
    keys = 0
    try:
        for group, source in steps:
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
