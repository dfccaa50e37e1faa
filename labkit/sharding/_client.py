"""A client over several independent servers, and moving keys when they change."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import redis

from labkit.core.args import check_count, check_name, check_seconds
from labkit.core.clients import check_client, execute
from labkit.errors import MoveError, ShardUnavailableError
from labkit.sharding._routers import Router

__all__ = ["MoveReport", "ShardedClient", "move_keys"]

#: What a server that is down, frozen or unreachable raises through redis-py.
_DOWN = (redis.ConnectionError, redis.TimeoutError)


def _socket_timeout(client: redis.Redis) -> float | None:
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return None if timeout is None else float(timeout)


def _check_clients(
    clients: Mapping[str, redis.Redis], router: Router
) -> dict[str, redis.Redis]:
    if not isinstance(clients, Mapping):
        raise TypeError(
            f"clients={clients!r}: must be a mapping {{node name: redis.Redis}}"
        )
    out = {}
    for name, client in clients.items():
        check_client(
            client,
            owner="ShardedClient",
            cluster="it shards over independent servers, while a RedisCluster "
            "already routes every key to its slot's owner",
        )
        if _socket_timeout(client) is None:
            raise ValueError(
                f"clients[{name!r}] has socket_timeout=None: a frozen server would "
                "block every call on it forever. Make the client with a "
                "socket_timeout in seconds, e.g. Server.client(socket_timeout=5) "
                "or redis.Redis(..., socket_timeout=5)"
            )
        out[name] = client
    if set(out) != set(router.nodes):
        raise ValueError(
            f"clients {sorted(out)!r} and router nodes "
            f"{sorted(router.nodes)!r} must name the same servers"
        )
    return out


def _check_shard_key(key: Any) -> None:
    if not isinstance(key, str | bytes):
        raise TypeError(f"key={key!r}: must be a non-empty str (or bytes)")
    if not key:
        raise ValueError(f"key={key!r}: must be a non-empty str (or bytes)")


class ShardedClient:
    """Client-side sharding: each key goes to the server its router names.

    Args:
        clients: ``{node name: redis.Redis}``; the names must be exactly the
            router's nodes. Each client needs a ``socket_timeout``: it is the
            bound on how long a call waits for a frozen server.
        router: Any :class:`~labkit.sharding.Router`.

    Single-key commands go to one server in one round trip. Multi-key reads
    (:meth:`mget`) are split by owner and sent as one ``MGET`` per server, so
    a read of k keys costs at most N round trips, not k. There is no
    cross-server atomicity: a ``MULTI`` or Lua script can only cover keys that
    live on one server (see :meth:`client_for`).

    A server that refuses connections, resets them or stays silent past the
    client's ``socket_timeout`` (times the retries of its redis-py retry
    policy) raises :class:`~labkit.errors.ShardUnavailableError` naming it;
    calls on the other servers keep working.

    Raises:
        TypeError: ``router`` is not a Router, ``clients`` not a mapping of
            ``redis.Redis`` (a ``RedisCluster`` is refused: it shards itself).
        ValueError: Client names and router nodes differ, or a client has no
            ``socket_timeout``.
    """

    def __init__(self, clients: Mapping[str, redis.Redis], router: Router) -> None:
        if not isinstance(router, Router):
            raise TypeError(f"router={router!r}: expected a labkit.sharding.Router")
        self.clients = _check_clients(clients, router)
        self.router = router

    @staticmethod
    def _down(node: str, command: str, key: Any, exc: Exception) -> Exception:
        return ShardUnavailableError(
            f"server {node!r} did not answer {command}"
            f"{f' {key!r}' if key else ''}: {type(exc).__name__}: {exc}",
            node=node,
            key=str(key),
            command=command,
        )

    # --- routing ----------------------------------------------------------
    def node_for(self, key: str | bytes) -> str:
        """Name of the server that owns ``key``."""
        _check_shard_key(key)
        return self.router.node_for(key)

    def client_for(self, key: str | bytes) -> redis.Redis:
        """The client of the server that owns ``key`` (for pipelines, scripts)."""
        return self.clients[self.node_for(key)]

    def execute(self, command: str, key: str | bytes, *args: Any) -> Any:
        """Run any single-key command, e.g. ``execute("HINCRBY", key, "f", 1)``."""
        check_name("command", command, max_len=64)
        node = self.node_for(key)
        try:
            return execute(self.clients[node], command, key, *args)
        except _DOWN as exc:
            raise self._down(node, command, key, exc) from exc

    # --- common single-key commands ---------------------------------------
    def get(self, key: str | bytes) -> Any:
        """``GET`` on the owning server."""
        # The hot path bench_instructions.py holds to 1.05x a direct GET:
        # the key check inline, then the router, then the node's own client.
        if (type(key) is not str and type(key) is not bytes) or not key:
            _check_shard_key(key)
        node = self.router.node_for(key)
        try:
            return self.clients[node].get(key)
        except _DOWN as exc:
            raise self._down(node, "GET", key, exc) from exc

    def set(self, key: str | bytes, value: Any, **kwargs: Any) -> Any:
        """``SET`` on the owning server; ``ex``, ``nx`` ... as in redis-py."""
        node = self.node_for(key)
        try:
            return self.clients[node].set(key, value, **kwargs)
        except _DOWN as exc:
            raise self._down(node, "SET", key, exc) from exc

    def incr(self, key: str | bytes, amount: int = 1) -> int:
        """``INCRBY`` on the owning server."""
        node = self.node_for(key)
        try:
            return self.clients[node].incrby(key, amount)
        except _DOWN as exc:
            raise self._down(node, "INCRBY", key, exc) from exc

    def ttl(self, key: str | bytes) -> int:
        """``TTL`` on the owning server (-1 no expiry, -2 missing)."""
        node = self.node_for(key)
        try:
            return self.clients[node].ttl(key)
        except _DOWN as exc:
            raise self._down(node, "TTL", key, exc) from exc

    # --- multi-key commands, split per server ------------------------------
    @staticmethod
    def _keys(keys: Any) -> list[Any]:
        if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
            raise TypeError(
                f"keys={keys!r}: must be a list of keys (a bare str is one key: "
                f"write [{keys!r}])"
            )
        return list(keys)

    def _group(self, keys: list[Any]) -> dict[str, list[Any]]:
        """Keys grouped by owner, in input order; every key checked first."""
        groups: dict[str, list[Any]] = {}
        for key in keys:
            groups.setdefault(self.node_for(key), []).append(key)
        return groups

    def mget(self, keys: Iterable[str]) -> list[Any]:
        """Values of ``keys`` in order: one ``MGET`` per server involved."""
        keys = self._keys(keys)
        found: dict[Any, Any] = {}
        for node, group in self._group(keys).items():
            try:
                values = self.clients[node].mget(group)
            except _DOWN as exc:
                raise self._down(node, "MGET", "", exc) from exc
            found.update(zip(group, values, strict=True))
        return [found[key] for key in keys]

    def mset(self, mapping: Mapping[str, Any]) -> None:
        """Write many keys: one ``MSET`` per server (atomic per server only).

        All keys are routed and every value is checked before the first
        server is written, so a bad value (None, a bool, a list...) leaves
        every server as it was.

        Raises:
            TypeError: ``mapping`` is not a mapping, or a value is not a str,
                bytes, int or float (it names the key); nothing is written.
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(f"mapping={mapping!r}: must be a mapping {{key: value}}")
        groups = self._group(list(mapping))
        for node, keys in groups.items():
            encoder = self.clients[node].get_encoder()
            for k in keys:
                try:
                    encoder.encode(mapping[k])  # type: ignore[no-untyped-call]
                except redis.DataError as exc:
                    raise TypeError(
                        f"mapping[{k!r}]={mapping[k]!r:.60}: must be a str, bytes, "
                        "int or float; nothing was written"
                    ) from exc
        for node, keys in groups.items():
            try:
                self.clients[node].mset({k: mapping[k] for k in keys})
            except _DOWN as exc:
                raise self._down(node, "MSET", "", exc) from exc

    def delete(self, *keys: str) -> int:
        """``DEL`` per server; returns how many keys existed."""
        total = 0
        for node, group in self._group(list(keys)).items():
            try:
                total += self.clients[node].delete(*group)
            except _DOWN as exc:
                raise self._down(node, "DEL", "", exc) from exc
        return total

    def dbsizes(self) -> dict[str, int]:
        """``{node: DBSIZE}`` for every server."""
        out = {}
        for node, client in self.clients.items():
            try:
                out[node] = client.dbsize()
            except _DOWN as exc:
                raise self._down(node, "DBSIZE", "", exc) from exc
        return out

    def scan_iter(self, match: str = "*", count: int = 1000) -> Iterator[str]:
        """Every key matching ``match`` on every server."""
        check_name("match", match)
        check_count("count", count, max=100_000)
        for node, client in self.clients.items():
            try:
                yield from client.scan_iter(match=match, count=count)
            except _DOWN as exc:
                raise self._down(node, "SCAN", "", exc) from exc

    def __repr__(self) -> str:
        return f"ShardedClient({self.router!r})"


class MoveReport(NamedTuple):
    """What :func:`move_keys` did.

    Attributes:
        scanned: Keys looked at.
        moved: Keys moved to their new owner (stored there, deleted here).
        seconds: Wall time of the whole move.
    """

    scanned: int
    moved: int
    seconds: float


def _address(client: redis.Redis) -> tuple[str, int, int, str | None, str | None]:
    kw = client.connection_pool.connection_kwargs
    return (
        kw.get("host", "localhost"),
        kw.get("port", 6379),
        kw.get("db", 0),
        kw.get("username"),
        kw.get("password"),
    )


def move_keys(
    old: ShardedClient,
    new: ShardedClient,
    *,
    match: str = "*",
    batch: int = 500,
    timeout: float = 5.0,
) -> MoveReport:
    """Move every key whose owner differs between ``old`` and ``new``.

    Servers are matched by name: a name in both must be the same server. Keys
    move server to server with ``MIGRATE`` (without ``COPY``: stored on the
    target, TTL kept, then deleted from the source), ``batch`` keys per
    command. While this runs, a reader using ``new`` misses keys not moved yet
    and a reader using ``old`` misses keys already moved: client-side
    resharding is not live. Redis Cluster's ``ASK`` redirection solves exactly
    that (see :mod:`labkit.lab.sharding.reshard`).

    Args:
        old, new: The layout before and after.
        match: ``SCAN`` pattern of the keys to consider.
        batch: Keys per ``MIGRATE`` (1 to 10,000).
        timeout: Seconds a ``MIGRATE`` may wait on the target (its timeout
            argument); the source's own client ``socket_timeout`` bounds the
            wait on the source.

    Raises:
        TypeError, ValueError: Bad arguments, or a name of both layouts
            points at two different servers.
        MoveError: A server failed part way; every key is either still on
            its old server or already on its new one. Run the move again.
    """
    for name, value in (("old", old), ("new", new)):
        if not isinstance(value, ShardedClient):
            raise TypeError(f"{name}={value!r}: expected a labkit ShardedClient")
    check_name("match", match)
    check_count("batch", batch, max=10_000)
    check_seconds("timeout", timeout, max=3600)
    for name in set(old.clients) & set(new.clients):
        if _address(old.clients[name])[:3] != _address(new.clients[name])[:3]:
            raise ValueError(
                f"server {name!r} is {_address(old.clients[name])[:3]} in old and "
                f"{_address(new.clients[name])[:3]} in new: a name in both "
                "layouts must be the same server"
            )
    start = time.perf_counter()
    # List every shard before moving anything: a key moved into a shard not
    # scanned yet would otherwise be looked at twice. (SCAN itself may also
    # repeat a key while the table rehashes: dedupe.)
    listed = {}
    for name, client in old.clients.items():
        try:
            listed[name] = list(dict.fromkeys(client.scan_iter(match, count=1000)))
        except _DOWN as exc:
            raise MoveError(
                f"move_keys: listing keys on {name!r} failed before anything "
                f"moved: {type(exc).__name__}: {exc}",
                source=name,
                target="",
                moved=0,
            ) from exc
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
                try:
                    execute(
                        old.clients[name],
                        "MIGRATE", host, port, "", db, int(timeout * 1000),
                        "REPLACE", *auth, "KEYS", *chunk,
                    )  # fmt: skip
                except (*_DOWN, redis.ResponseError) as exc:
                    raise MoveError(
                        f"move_keys: moving keys from {name!r} to {owner!r} failed "
                        f"after {moved} of {scanned} keys: {type(exc).__name__}: "
                        f"{exc}. Every key is on its old or its new server; run "
                        "move_keys again to finish.",
                        source=name,
                        target=owner,
                        moved=moved,
                    ) from exc
                moved += len(chunk)
    return MoveReport(scanned, moved, time.perf_counter() - start)
