"""What a pattern needs of its client and of the server behind it, checked once.

Patterns call :func:`check_client` in their constructor, so a wrong client fails
there with a clear ``TypeError`` instead of deep inside a later call:

- a ``RedisCluster`` where the pattern cannot work on a cluster (say why);
- ``decode_responses=False`` where the pattern parses replies as ``str``.

:func:`server_version` and :func:`supports` read the server's version once
per client, for features newer than the lab's floor of Redis/Valkey 7.0.

:func:`client_like` makes "a client like this one, with a pool of its own"
(for a listener whose socket the caller must not close, or a worker whose
calls need their own timeouts); :func:`connection_settings` is what it copies.
"""

from __future__ import annotations

import contextlib
import re
import reprlib
import weakref
from typing import Any, NamedTuple

import redis
from redis.client import Pipeline
from redis.cluster import ClusterPipeline

from labkit.errors import ServerVersionError

__all__ = [
    "FEATURES",
    "MIN_VERSION",
    "POOL_OWNED",
    "ServerVersion",
    "check_client",
    "client_like",
    "connection_settings",
    "decoded",
    "execute",
    "require_version",
    "server_version",
    "supports",
]

#: The oldest server labkit works with: ``#!lua`` script flags, ``PEXPIRE
#: NX/GT``, ``XAUTOCLAIM`` returning deleted ids, ``CLUSTER SHARDS``.
MIN_VERSION = (7, 0)

#: Features newer than :data:`MIN_VERSION`: ``{feature: {server: version}}``.
#: A server missing from a feature's entry never has it.
FEATURES: dict[str, dict[str, tuple[int, int]]] = {
    "hash-field-ttl": {"redis": (7, 4), "valkey": (9, 0)},  # HEXPIRE, HPTTL...
    "waitaof": {"redis": (7, 2), "valkey": (7, 2)},
    "cluster-slot-stats": {"valkey": (8, 0)},
    "atomic-slot-migration": {"valkey": (9, 0)},  # CLUSTER MIGRATESLOTS
}


#: Prefixes of what a redis-py pool adds to its own ``connection_kwargs``:
#: maintenance-notification state bound to that pool (its handler, the cluster
#: handler of a ``RedisCluster`` node, the original address and timeouts to
#: restore) and, from redis-py 8.2, the HIMPORT registry its connections share.
#: A new pool makes its own, and must not be given them. Checked against
#: redis-py 7.4 and 8.2 (``tests/test_clients.py`` fails loudly if a new one
#: appears in a fresh pool's kwargs).
POOL_OWNED = (
    "maint_notifications",
    "oss_cluster_maint_notifications",
    "orig_",
    "himport_registry",
)

#: The pools whose settings :func:`client_like` can copy. A Sentinel pool's
#: connections find the primary themselves and cannot be copied this way.
_COPYABLE = (redis.ConnectionPool, redis.BlockingConnectionPool)


def connection_settings(client: redis.Redis, **overrides: Any) -> dict[str, Any]:
    """``client``'s connection settings (host, port, password, TLS, db...).

    Args:
        client: A ``redis.Redis`` (for a cluster, one node's ``redis_connection``).
        **overrides: Settings to change in the copy (``socket_timeout=...``).

    Returns:
        ``client.connection_pool.connection_kwargs`` minus what the pool keeps
        there for itself (:data:`POOL_OWNED`), plus ``overrides``: what a new
        ``ConnectionPool`` or ``Connection`` of the same class may be given.
    """
    kwargs = {
        k: v
        for k, v in client.connection_pool.connection_kwargs.items()
        if not k.startswith(POOL_OWNED)
    }
    kwargs.update(overrides)
    return kwargs


def client_like(
    client: redis.Redis, *, max_connections: int | None = None, **overrides: Any
) -> redis.Redis | None:
    """A ``redis.Redis`` with ``client``'s settings and a connection pool of its own.

    Closing ``client`` (which disconnects every connection of its pool, in
    use or not) does not touch the copy's connections, and the copy's
    timeouts or retries can differ (``overrides``). The caller closes the
    copy (``.close()``, or ``.connection_pool.disconnect()``).

    Args:
        client: A ``redis.Redis`` (for a cluster, one node's ``redis_connection``).
        max_connections: The new pool's limit (None: redis-py's default).
        **overrides: Connection settings to change, see
            :func:`connection_settings`.

    Returns:
        The new client, or None if ``client``'s pool is of a kind that cannot
        be copied (Sentinel's, whose connections find the primary
        themselves): the caller then decides whether to share ``client``.

    Uses ``ConnectionPool.connection_class`` and ``connection_kwargs``,
    checked against redis-py 7.4 and 8.2 (``tests/test_clients.py``).
    """
    pool = client.connection_pool
    if type(pool) not in _COPYABLE:
        return None
    own = redis.ConnectionPool(
        connection_class=pool.connection_class,
        max_connections=max_connections,
        **connection_settings(client, **overrides),
    )
    return redis.Redis(connection_pool=own)


_Executes = redis.Redis | redis.RedisCluster | Pipeline | ClusterPipeline


def execute(client: _Executes, *args: Any, **options: Any) -> Any:
    """``client.execute_command(*args, **options)``, for the type checker.

    redis-py leaves ``execute_command`` unannotated; the library calls it
    through here so that mypy's ``disallow_untyped_calls`` stays on
    everywhere else. ``client`` is a ``redis.Redis``, a ``RedisCluster`` or
    a pipeline of either.
    """
    return client.execute_command(*args, **options)  # type: ignore[no-untyped-call]


class ServerVersion(NamedTuple):
    """Which server answers, and its version.

    Attributes:
        name: ``"valkey"`` or ``"redis"``.
        version: ``(major, minor, patch)``. Valkey's own version, not the
            Redis version it reports for compatibility (7.2.4).
    """

    name: str
    version: tuple[int, int, int]

    def __str__(self) -> str:
        return f"{self.name} {'.'.join(map(str, self.version))}"


_versions: weakref.WeakKeyDictionary[Any, ServerVersion] = weakref.WeakKeyDictionary()


def _parse(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", str(text))[:3]]
    return (*parts, 0, 0, 0)[:3]  # type: ignore[return-value]


def server_version(client: redis.Redis | redis.RedisCluster) -> ServerVersion:
    """The server's name and version (one ``INFO server``, cached per client)."""
    try:
        return _versions[client]
    except (KeyError, TypeError):
        pass
    if isinstance(client, redis.RedisCluster):
        info = client.info("server", target_nodes=redis.RedisCluster.RANDOM)
    else:
        info = client.info("server")
    if "valkey_version" in info:
        found = ServerVersion("valkey", _parse(info["valkey_version"]))
    else:
        found = ServerVersion("redis", _parse(info.get("redis_version", "0")))
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced
        _versions[client] = found
    return found


def supports(client: redis.Redis | redis.RedisCluster, feature: str) -> bool:
    """True if the client's server has ``feature`` (a key of :data:`FEATURES`)."""
    if feature not in FEATURES:
        raise ValueError(f"feature={feature!r}: must be one of {sorted(FEATURES)}")
    found = server_version(client)
    needed = FEATURES[feature].get(found.name)
    return needed is not None and found.version[:2] >= needed


def require_version(
    client: redis.Redis | redis.RedisCluster, url: str = ""
) -> ServerVersion:
    """Raise :class:`ServerVersionError` unless the server is >= :data:`MIN_VERSION`."""
    found = server_version(client)
    if found.version[:2] < MIN_VERSION:
        where = f" at {url}" if url else ""
        raise ServerVersionError(
            f"The server{where} is {found}; labkit needs Redis or Valkey "
            f">= {MIN_VERSION[0]}.{MIN_VERSION[1]} (its scripts use #!lua flags, "
            "its expiries PEXPIRE NX/GT, its queues XAUTOCLAIM). Upgrade the "
            "server, or unset REDIS_URL to use the embedded Valkey server.",
            url=url,
            version=str(found),
        )
    return found


def decoded(reply: Any) -> Any:
    """``reply`` with every ``bytes`` in it decoded as UTF-8 (invalid bytes
    replaced), in lists, tuples and dict keys and values.

    What a pattern that parses replies calls on them, so that it works the
    same with ``decode_responses=True`` or False (redis-py's default). A
    reply from a decoding client comes back equal.
    """
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    if isinstance(reply, list | tuple):
        return type(reply)(decoded(item) for item in reply)
    if isinstance(reply, dict):
        return {decoded(k): decoded(v) for k, v in reply.items()}
    return reply


def _decodes(client: Any) -> bool:
    return bool(client.get_encoder().decode_responses)


def _describe(client: Any) -> str:
    """A short, secret-free name for a client in an error message."""
    if isinstance(client, redis.RedisCluster):
        node = client.nodes_manager.default_node
        where = f"{node.host}:{node.port}" if node is not None else "?"
        return f"<RedisCluster {where} decode_responses={_decodes(client)}>"
    if isinstance(client, redis.Redis):
        kw = client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
        return (
            f"<Redis {where} db={kw.get('db', 0)} decode_responses={_decodes(client)}>"
        )
    return reprlib.repr(client)


def check_client(
    client: Any,
    *,
    owner: str,
    cluster: bool | str = True,
    decode: bool = False,
) -> Any:
    """Return ``client`` if ``owner`` can use it; else raise a clear TypeError.

    Args:
        client: What the caller passed.
        owner: The class asking, for the message (e.g. ``"JobQueue"``).
        cluster: True if the pattern works on a ``RedisCluster``; else a
            string saying why it does not (it is put in the message).
        decode: True if the pattern needs ``decode_responses=True``.
    """
    if not isinstance(client, redis.Redis | redis.RedisCluster):
        raise TypeError(
            f"client={_describe(client)}: {owner} needs a redis.Redis"
            f"{' or redis.RedisCluster' if cluster is True else ''} "
            "(e.g. labkit.connect())"
        )
    if isinstance(client, redis.RedisCluster) and cluster is not True:
        reason = f": {cluster}" if isinstance(cluster, str) else ""
        raise TypeError(
            f"client={_describe(client)}: {owner} does not work on a "
            f"RedisCluster{reason}. "
            "Pass a redis.Redis for one server (or one node)."
        )
    if decode and not _decodes(client):
        raise TypeError(
            f"client={_describe(client)}: {owner} needs a client made with "
            "decode_responses=True (labkit.connect() does that by default)"
        )
    return client
