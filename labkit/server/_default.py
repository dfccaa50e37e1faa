"""`connect()`: a client for REDIS_URL, or for one lazily started embedded server."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis

from labkit.core.clients import client_like, require_version
from labkit.errors import ServerVersionError
from labkit.server._clients import client_options, mask_url, no_retry
from labkit.server._process import Server, _live_servers
from labkit.server.errors import ServerUnreachableError

__all__ = ["connect", "default_server", "fresh_client", "mask_url", "running_servers"]

_default: Server | None = None
_default_lock = threading.Lock()


def default_server() -> Server:
    """The process-wide embedded server, started on first use.

    It is stopped when the interpreter exits (or, on Linux, killed by the OS
    if the interpreter itself is killed).
    """
    global _default
    with _default_lock:
        if _default is None or not _default.running:
            _default = Server().start()
        return _default


def running_servers(*, include_default: bool = True) -> list[Server]:
    """Every :class:`Server` this process started that is still running.

    Args:
        include_default: Also list the server behind :func:`connect` (it runs
            until the interpreter exits, by design), if it was started.
    """
    servers = _live_servers()
    if include_default:
        return servers
    return [s for s in servers if s is not _default]


def fresh_client(
    client: redis.Redis, *, max_connections: int | None = None
) -> redis.Redis:
    """A client with ``client``'s settings on a connection pool of its own.

    For experiments that need their own connections (many subscribers, a
    connection per request) without touching the caller's pool or its
    ``max_connections``. Call ``.connection_pool.disconnect()`` when done.
    """
    own = client_like(client, max_connections=max_connections)
    if own is None:
        raise TypeError(
            f"client={client!r}: its pool ({type(client.connection_pool).__name__})"
            " cannot be copied; pass a client on a redis.ConnectionPool"
        )
    return own


def connect(url: str | None = None, **kwargs: Any) -> redis.Redis:
    """Return a connected ``redis.Redis``.

    Args:
        url: A ``redis://`` / ``rediss://`` / ``unix://`` URL. If None, the
            ``REDIS_URL`` environment variable is used; if that is unset or
            empty, an embedded Valkey server is started for this process.
        **kwargs: Passed to ``redis.Redis``. labkit's defaults (see
            :func:`labkit.server.client_options`): ``decode_responses=True``,
            ``socket_timeout`` 5 s, ``socket_connect_timeout`` 2 s, one retry
            on a dropped connection only; so a frozen server fails a call within
            seconds instead of blocking it. Override any of them here.

    Raises:
        ServerUnreachableError: The URL did not answer PING. The message names
            the URL (password masked) and how to fall back to the embedded server.
        ServerVersionError: The server is older than Redis/Valkey 7.0.
        ValueError, TypeError: The URL is not a Redis URL.
    """
    source = "url argument"
    if url is None:
        url = os.environ.get("REDIS_URL") or None
        source = "REDIS_URL"
    if url is None:
        return default_server().client(**kwargs)
    if not isinstance(url, str):
        raise TypeError(f"url={url!r}: must be a redis://, rediss:// or unix:// URL")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            f"{source}={mask_url(url)!r}: must be a redis://, rediss:// or unix:// "
            "URL, e.g. redis://localhost:6379/15"
        )
    try:
        client = redis.Redis.from_url(url, **client_options(**kwargs))
        # Probe once, without retries, so a wrong URL fails in seconds.
        probe = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=5, retry=no_retry()
        )
    except (ValueError, TypeError) as exc:
        # redis-py's message may quote the URL, password and all.
        raise type(exc)(
            f"{source}={mask_url(url)!r}: not a usable Redis URL "
            f"({type(exc).__name__}); e.g. redis://:password@localhost:6379/15"
        ) from None
    try:
        probe.ping()
        require_version(probe, mask_url(url))
    except (redis.exceptions.AuthenticationError, ServerVersionError):
        client.close()
        raise
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        client.close()
        fallback = (
            "unset REDIS_URL (e.g. `unset REDIS_URL` or `%env REDIS_URL=` in a "
            "notebook)"
            if source == "REDIS_URL"
            else "call labkit.connect() with no url"
        )
        raise ServerUnreachableError(
            f"Cannot reach the Redis server at {mask_url(url)} (from {source}): "
            f"{str(exc).rstrip('.')}. Start that server or fix the URL; or, to use "
            f"the embedded Valkey server labkit starts for you, {fallback}.",
            url=mask_url(url),
        ) from exc
    finally:
        probe.close()
    return client
