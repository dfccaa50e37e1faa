"""How labkit's clients behave: bounded waits, one retry, URLs and masking.

A server that stops answering (a frozen process, a partition) must not hang a
notebook cell. Every client labkit makes (:func:`labkit.connect`,
``Server.client()``) therefore gets, unless the caller overrides them:

- ``socket_timeout`` of :data:`SOCKET_TIMEOUT` seconds: a command whose reply
  does not come within that time raises ``redis.exceptions.TimeoutError``;
- ``socket_connect_timeout`` of :data:`CONNECT_TIMEOUT` seconds;
- one quick retry on a *dropped connection* only (the server restarted, a
  ``CLIENT KILL``): redis-py 8 would otherwise retry three times with backoff
  on timeouts too, so a frozen server would block each call for many times
  the socket timeout.

Blocking commands (``BLPOP``, ``XREADGROUP BLOCK``) must block for less than the
socket timeout; pass ``socket_timeout=`` to :func:`labkit.connect` for longer
ones (``None`` waits forever: never the default).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

__all__ = [
    "CONNECT_TIMEOUT",
    "SOCKET_TIMEOUT",
    "client_options",
    "default_retry",
    "mask_url",
    "no_retry",
    "server_url",
]

#: Seconds a command may wait for its reply before failing (overridable).
SOCKET_TIMEOUT = 5.0
#: Seconds a connection attempt may take.
CONNECT_TIMEOUT = 2.0


def no_retry() -> Retry:
    """A redis-py retry policy that does not retry.

    Probes, SHUTDOWN and crash experiments want the failure at once.
    """
    return Retry(NoBackoff(), 0)


def default_retry() -> Retry:
    """One retry, after 10-200 ms, and only when the connection was dropped."""
    return Retry(
        ExponentialBackoff(cap=0.2, base=0.01),
        1,
        supported_errors=(redis.exceptions.ConnectionError,),
    )


def client_options(**overrides: Any) -> dict[str, Any]:
    """labkit's client defaults (see the module docstring), updated by ``overrides``."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "retry": default_retry(),
    }
    options.update(overrides)
    return options


def server_url(host: str, port: int, password: str | None, db: int = 0) -> str:
    """A ``redis://`` URL, the password percent-encoded (any character is safe)."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def mask_url(url: str) -> str:
    """``url`` with any password (and user name kept) replaced by ``***``.

    Works for any password, ``@`` and ``:`` included: the credentials are what
    lies before the *last* ``@`` of the network location.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        masked = f"{user}:***" if sep or not user else "***"
        netloc = f"{masked}@{hostport}"
    if "password=" in query:  # redis-py also reads ?password=...
        query = "&".join(
            "password=***" if item.startswith("password=") else item
            for item in query.split("&")
        )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
