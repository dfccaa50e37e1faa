"""`connect()`: a client for REDIS_URL, or for one lazily started embedded server."""

from __future__ import annotations

import os
import re
import threading
from typing import Any

import redis

from labkit.errors import ServerUnreachableError
from labkit.server._process import Server, _live_servers, no_retry

__all__ = ["connect", "default_server", "fresh_client", "mask_url", "running_servers"]

_default: Server | None = None
_default_lock = threading.Lock()


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


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
    base = client.connection_pool
    pool = redis.ConnectionPool(
        connection_class=base.connection_class,
        max_connections=max_connections,
        **base.connection_kwargs,
    )
    return redis.Redis(connection_pool=pool)


def connect(url: str | None = None, **kwargs: Any) -> redis.Redis:
    """Return a connected ``redis.Redis``.

    Args:
        url: A ``redis://`` / ``rediss://`` / ``unix://`` URL. If None, the
            ``REDIS_URL`` environment variable is used; if that is unset or
            empty, an embedded Valkey server is started for this process.
        **kwargs: Passed to ``redis.Redis``; ``decode_responses`` defaults to
            True so that replies are ``str``.

    Raises:
        ServerUnreachableError: The URL did not answer PING. The message names
            the URL (password masked) and how to fall back to the embedded server.
        ValueError: The URL is not a Redis URL.
    """
    kwargs.setdefault("decode_responses", True)
    source = "url argument"
    if url is None:
        url = os.environ.get("REDIS_URL") or None
        source = "REDIS_URL"
    if url is None:
        return default_server().client(**kwargs)
    client = redis.Redis.from_url(url, **kwargs)
    # Probe once, without redis-py's retries, so a wrong URL fails in seconds.
    probe = redis.Redis.from_url(url, socket_connect_timeout=5, retry=no_retry())
    try:
        probe.ping()
    except redis.exceptions.AuthenticationError:
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
