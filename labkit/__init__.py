"""labkit: Redis patterns implemented properly, for the Redis Patterns Lab.

Two layers. The library, one package or module per pattern (:mod:`labkit.cache`,
:mod:`labkit.ratelimit`, :mod:`labkit.flags`, :mod:`labkit.sharding`,
:mod:`labkit.pubsub`, :mod:`labkit.queues`, :mod:`labkit.timeseries`,
:mod:`labkit.locks`), built on
:mod:`labkit.core` and :mod:`labkit.errors`: what an application imports. The
lab, :mod:`labkit.lab`: experiments, harnesses, tutorial systems and plots.
:mod:`labkit.server` starts real servers for both the lab and the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = ["__version__", "connect"]

__version__ = "0.2.0"


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
    # Imported here, not at the top: `import labkit.<pattern>` must not load
    # the server machinery (its spawner thread pool and atexit hook).
    from labkit.server import connect as server_connect

    return server_connect(url, **kwargs)
