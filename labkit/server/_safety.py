"""Guards for destructive commands: labkit empties and reconfigures only what it may.

The notebooks and tests start from an empty database, and a few experiments
change server settings (``maxmemory``, the eviction policy). On a server that
labkit started for this lab, that is harmless. On a server given by
``REDIS_URL``, database 0 may hold someone's data, so these guards refuse
unless the user opted in: the URL names a database other than 0 (a spare one,
``/15``), or ``LABKIT_ALLOW_FLUSH=1`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import PurePath

import redis

from labkit.server._process import CONFIG_NAME
from labkit.server.errors import UnsafeServerError

__all__ = ["ALLOW_FLUSH_ENV", "check_destructive", "flushdb", "reconfigured"]

#: Environment variable that allows flushing / reconfiguring database 0 of a
#: server labkit did not start.
ALLOW_FLUSH_ENV = "LABKIT_ALLOW_FLUSH"

_CONF_STEM = CONFIG_NAME.split(".", 1)[0]  # "labkit-server"


def _nodes(client: redis.Redis | redis.RedisCluster) -> list[redis.Redis]:
    if isinstance(client, redis.RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        return [client.get_redis_connection(n) for n in primaries]
    return [client]


def _url(node: redis.Redis) -> str:
    kw = node.connection_pool.connection_kwargs
    auth = ":***@" if kw.get("password") else ""
    if "path" in kw:
        return f"unix://{auth}{kw['path']}?db={kw.get('db', 0)}"
    return f"redis://{auth}{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"


def _started_by_labkit(node: redis.Redis) -> bool:
    """True if the server runs from a config file labkit wrote (see Server)."""
    try:
        conf = node.info("server").get("config_file") or ""
    except redis.exceptions.ResponseError:  # INFO disabled (managed services)
        return False
    return PurePath(str(conf)).name.startswith(_CONF_STEM)


def check_destructive(client: redis.Redis | redis.RedisCluster, action: str) -> None:
    """Raise unless ``action`` (e.g. ``"FLUSHDB"``) is safe on ``client``'s server.

    Safe means: labkit started the server, or the client uses a database other
    than 0, or ``LABKIT_ALLOW_FLUSH=1`` is set.

    Raises:
        UnsafeServerError: None of those holds; the message names the server
            (password masked), how many keys are at stake and how to opt in.
    """
    if os.environ.get(ALLOW_FLUSH_ENV) == "1":
        return
    for node in _nodes(client):
        db = node.connection_pool.connection_kwargs.get("db", 0)
        if db not in (0, "0") or _started_by_labkit(node):
            continue
        url = _url(node)
        keys = node.dbsize()
        raise UnsafeServerError(
            f"Refusing to run {action} on {url}: labkit did not start that server, "
            f"and its database 0 holds {keys} key(s) that could be lost or affected. "
            f"To use it anyway, either point REDIS_URL at a spare database "
            f"(e.g. {url.rsplit('/', 1)[0]}/15), or set {ALLOW_FLUSH_ENV}=1 "
            "(in a notebook: %env LABKIT_ALLOW_FLUSH=1). Or unset REDIS_URL to use "
            "the embedded server labkit starts for you.",
            url=url,
            keys=keys,
        )


def flushdb(client: redis.Redis | redis.RedisCluster) -> int:
    """Empty the client's database, if that is safe (see :func:`check_destructive`).

    Returns:
        The number of keys that were deleted.
    """
    check_destructive(client, "FLUSHDB")
    keys = sum(int(node.dbsize()) for node in _nodes(client))
    for node in _nodes(client):
        node.flushdb()
    return keys


@contextmanager
def reconfigured(
    client: redis.Redis, settings: Mapping[str, str | int]
) -> Iterator[dict[str, str]]:
    """Apply ``CONFIG SET`` settings for a block, and restore them afterwards.

    The old values are restored even when the block raises.

    Yields:
        The previous values, ``{name: value}``.

    Raises:
        UnsafeServerError: The server is not one labkit may reconfigure (see
            :func:`check_destructive`).
    """
    check_destructive(client, "CONFIG SET " + " ".join(settings))
    old: dict[str, str] = {}
    for name in settings:
        found = client.config_get(name)
        if name not in found:
            raise ValueError(f"settings: {name!r} is not a config parameter here")
        old[name] = str(found[name])
    try:
        for name, value in settings.items():
            client.config_set(name, value)
        yield old
    finally:
        # Restore in reverse order: maxmemory before maxmemory-policy, etc.
        for name in reversed(list(old)):
            client.config_set(name, old[name])
