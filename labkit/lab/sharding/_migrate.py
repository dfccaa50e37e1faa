"""Lab: moving cluster slots, key by key (``MIGRATE``) or atomically (``MIGRATESLOTS``).

Housed here to keep :mod:`labkit.lab.sharding.reshard` short; import them from there.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import redis

from labkit.errors import MoveError
from labkit.server import Cluster, Server
from labkit.server.errors import ClusterStateError

__all__ = [
    "Member",
    "count_keys",
    "migrate_slots",
    "migrate_slots_atomic",
    "redirect_counts",
    "runs",
]


class Member(NamedTuple):
    """A master taking part in a reshard: its server, one open client, its id."""

    server: Server
    client: redis.Redis
    id: str


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


def runs(slots: list[int]) -> list[tuple[int, int]]:
    """Sorted slots as inclusive ``(first, last)`` runs: ``[1, 2, 3, 7]`` -> two."""
    out: list[tuple[int, int]] = []
    for slot in sorted(slots):
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out


def count_keys(member: Member, slots: list[int]) -> int:
    """Keys ``member`` holds in ``slots`` (``CLUSTER COUNTKEYSINSLOT``, pipelined)."""
    pipe = member.client.pipeline(transaction=False)
    for slot in slots:
        pipe.execute_command("CLUSTER COUNTKEYSINSLOT", slot)
    return sum(int(n) for n in pipe.execute())


def migrate_slots_atomic(
    slots: list[int], source: Member, target: Member, *, timeout: float = 120.0
) -> int:
    """Move ``slots`` with one ``CLUSTER MIGRATESLOTS`` (Valkey 9.0+), and wait.

    The source streams the slots' data to the target in the background while
    it keeps serving every key (writes meanwhile are forwarded too); when the
    target has caught up, ownership flips for all the slots at once. No
    ``ASK``, no ``TRYAGAIN``, no per-key ``MIGRATE``. Progress is read with
    ``CLUSTER GETSLOTMIGRATIONS`` on the source.

    Returns:
        Keys the slots held when the move started.

    Raises:
        MoveError: The job failed or was cancelled (its message quoted).
        ClusterStateError: Not finished within ``timeout`` seconds.
    """
    keys = count_keys(source, slots)
    ranges = [bound for run in runs(slots) for bound in run]
    seen = {
        job["name"]
        for job in source.client.execute_command("CLUSTER GETSLOTMIGRATIONS")
    }
    source.client.execute_command(
        "CLUSTER MIGRATESLOTS", "SLOTSRANGE", *ranges, "NODE", target.id
    )
    deadline = time.monotonic() + timeout
    while True:
        jobs = [
            job
            for job in source.client.execute_command("CLUSTER GETSLOTMIGRATIONS")
            if job["name"] not in seen and job.get("operation") == "EXPORT"
        ]
        states = {job["state"] for job in jobs}
        if jobs and states <= {"success"}:
            return keys
        if states & {"failed", "cancelled"}:
            detail = "; ".join(f"{j['state']}: {j.get('message', '')}" for j in jobs)
            raise MoveError(
                f"atomic slot migration {source.server.port} -> "
                f"{target.server.port} ended with {detail}",
                source=f"{source.server.host}:{source.server.port}",
                target=f"{target.server.host}:{target.server.port}",
                moved=0,
            )
        if time.monotonic() > deadline:
            raise ClusterStateError(
                f"atomic slot migration of {len(slots)} slots not done after "
                f"{timeout:g} s (states: {sorted(states)})",
                what="CLUSTER GETSLOTMIGRATIONS state success",
                nodes=[f"{m.server.host}:{m.server.port}" for m in (source, target)],
                timeout=timeout,
            )
        time.sleep(0.01)


def redirect_counts(cluster: Cluster) -> dict[str, int]:
    """``{"ASK": n, "MOVED": n, "TRYAGAIN": n}`` the running nodes have replied so far.

    Read from ``INFO errorstats`` (one counter per error prefix a node sent);
    take two readings and subtract to count what happened in between.
    """
    out = dict.fromkeys(("ASK", "MOVED", "TRYAGAIN"), 0)
    for node in cluster.nodes:
        if not node.running:
            continue
        with node.client(socket_timeout=5) as client:
            stats = client.info("errorstats")
        for name in out:
            out[name] += int(stats.get(f"errorstat_{name}", {}).get("count", 0))
    return out
