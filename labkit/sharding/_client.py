"""A client over several independent servers, and moving keys when they change."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import redis

from labkit.sharding._routers import Router

__all__ = ["MoveReport", "ShardedClient", "move_keys"]


class ShardedClient:
    """Client-side sharding: each key goes to the server its router names.

    Args:
        clients: ``{node name: redis.Redis}``; the names must be exactly the
            router's nodes.
        router: Any :class:`~labkit.sharding.Router`.

    Single-key commands go to one server in one round trip. Multi-key reads
    (:meth:`mget`) are split by owner and sent as one ``MGET`` per server, so
    a read of k keys costs at most N round trips, not k. There is no
    cross-server atomicity: a ``MULTI`` or Lua script can only cover keys that
    live on one server (see :meth:`client_for`).

    Raises:
        ValueError: Client names and router nodes differ.
    """

    def __init__(self, clients: Mapping[str, redis.Redis], router: Router) -> None:
        if not isinstance(router, Router):
            raise TypeError(f"router={router!r}: expected a labkit.sharding.Router")
        if set(clients) != set(router.nodes):
            raise ValueError(
                f"clients {sorted(clients)!r} and router nodes "
                f"{sorted(router.nodes)!r} must name the same servers"
            )
        self.clients = dict(clients)
        self.router = router

    # --- routing ----------------------------------------------------------
    def node_for(self, key: str) -> str:
        """Name of the server that owns ``key``."""
        return self.router.node_for(key)

    def client_for(self, key: str) -> redis.Redis:
        """The client of the server that owns ``key`` (for pipelines, scripts)."""
        return self.clients[self.router.node_for(key)]

    def execute(self, command: str, key: str, *args: Any) -> Any:
        """Run any single-key command, e.g. ``execute("HINCRBY", key, "f", 1)``."""
        return self.client_for(key).execute_command(command, key, *args)

    # --- common single-key commands ---------------------------------------
    def get(self, key: str) -> Any:
        """``GET`` on the owning server."""
        return self.client_for(key).get(key)

    def set(self, key: str, value: Any, **kwargs: Any) -> Any:
        """``SET`` on the owning server; ``ex``, ``nx`` ... as in redis-py."""
        return self.client_for(key).set(key, value, **kwargs)

    def incr(self, key: str, amount: int = 1) -> int:
        """``INCRBY`` on the owning server."""
        return self.client_for(key).incrby(key, amount)

    def ttl(self, key: str) -> int:
        """``TTL`` on the owning server (-1 no expiry, -2 missing)."""
        return self.client_for(key).ttl(key)

    # --- multi-key commands, split per server ------------------------------
    def mget(self, keys: Iterable[str]) -> list[Any]:
        """Values of ``keys`` in order: one ``MGET`` per server involved."""
        keys = list(keys)
        out: list[Any] = [None] * len(keys)
        positions: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            positions.setdefault(self.router.node_for(key), []).append(i)
        for node, idx in positions.items():
            values = self.clients[node].mget([keys[i] for i in idx])
            for i, value in zip(idx, values, strict=True):
                out[i] = value
        return out

    def mset(self, mapping: Mapping[str, Any]) -> None:
        """Write many keys: one ``MSET`` per server (atomic per server only)."""
        for node, keys in self.router.group(mapping).items():
            self.clients[node].mset({k: mapping[k] for k in keys})

    def delete(self, *keys: str) -> int:
        """``DEL`` per server; returns how many keys existed."""
        return sum(
            self.clients[node].delete(*group)
            for node, group in self.router.group(keys).items()
        )

    def dbsizes(self) -> dict[str, int]:
        """``{node: DBSIZE}`` for every server."""
        return {name: c.dbsize() for name, c in self.clients.items()}

    def scan_iter(self, match: str = "*", count: int = 1000) -> Iterator[str]:
        """Every key matching ``match`` on every server."""
        for client in self.clients.values():
            yield from client.scan_iter(match=match, count=count)

    def __repr__(self) -> str:
        return f"ShardedClient({self.router!r})"


class MoveReport(NamedTuple):
    """What :func:`move_keys` did.

    Attributes:
        scanned: Keys looked at.
        moved: Keys copied to their new owner and deleted from the old one.
        seconds: Wall time of the whole move.
    """

    scanned: int
    moved: int
    seconds: float


def _address(client: redis.Redis) -> tuple[str, int, int, str | None, str | None]:
    kw = client.connection_pool.connection_kwargs
    return (
        kw["host"],
        kw["port"],
        kw.get("db", 0),
        kw.get("username"),
        kw.get("password"),
    )


def move_keys(
    old: ShardedClient, new: ShardedClient, *, match: str = "*", batch: int = 500
) -> MoveReport:
    """Move every key whose owner differs between ``old`` and ``new``.

    Servers are matched by name: a name in both maps to the same server. Keys
    move server to server with ``MIGRATE`` (TTL kept, deleted from the source
    once stored), ``batch`` keys per command. While this runs, a reader using
    ``new`` misses keys not moved yet and a reader using ``old`` misses keys
    already moved: client-side resharding is not live. Redis Cluster's
    ``ASK`` redirection solves exactly that (see :mod:`labkit.lab.sharding.reshard`).

    Raises:
        ValueError: ``batch < 1``.
    """
    if batch < 1:
        raise ValueError(f"batch={batch!r}: must be >= 1")
    start = time.perf_counter()
    # List every shard before moving anything: a key moved into a shard not
    # scanned yet would otherwise be looked at twice. (SCAN itself may also
    # repeat a key while the table rehashes: dedupe.)
    listed = {
        name: list(dict.fromkeys(client.scan_iter(match=match, count=1000)))
        for name, client in old.clients.items()
    }
    scanned = sum(len(keys) for keys in listed.values())
    moved = 0
    for name, keys in listed.items():
        pending: dict[str, list[str]] = {}
        for key in keys:
            owner = new.router.node_for(key)
            if owner != name:
                pending.setdefault(owner, []).append(key)
        for owner, group in pending.items():
            host, port, db, user, password = _address(new.clients[owner])
            auth: list[Any] = []
            if password:
                auth = ["AUTH2", user or "default", password]
            for i in range(0, len(group), batch):
                chunk = group[i : i + batch]
                old.clients[name].execute_command(
                    "MIGRATE", host, port, "", db, 5000, "REPLACE", *auth,
                    "KEYS", *chunk,
                )  # fmt: skip
                moved += len(chunk)
    return MoveReport(scanned, moved, time.perf_counter() - start)
