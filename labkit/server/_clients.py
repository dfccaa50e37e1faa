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
from urllib.parse import quote, urlsplit

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


_SCHEMES = ("redis", "rediss", "unix")
#: Query parameters that may carry a secret (redis-py reads ?password=...).
_SECRET_PARAMS = ("pass", "auth", "secret", "token", "key")


def _hidden(url: str) -> str:
    scheme = url.split(":", 1)[0] if ":" in url else ""
    kind = f"{scheme} " if scheme in _SCHEMES else ""
    return (
        f"<a malformed {kind}URL of {len(url)} characters, not shown: it may "
        "hold a password>"
    )


def mask_url(url: Any) -> str:
    """``url`` with any password (and user name kept) replaced by ``***``.

    Works for any password, ``@`` and ``:`` included: the credentials are what
    lies before the *last* ``@`` of the network location. A URL that does not
    parse as ``scheme://[user:password@]host[:port][/db][?query]`` (a missing
    slash, a port that is not a number, an ``@`` outside the network location,
    control characters...) cannot be masked reliably, so it is not shown at
    all: the answer says how long it was instead.
    """
    if not isinstance(url, str):
        return f"<not a URL: a {type(url).__name__}>"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        return _hidden(url)
    shaped = (
        parts.scheme in _SCHEMES
        and url.startswith(f"{parts.scheme}://")
        and (parts.netloc or parts.scheme == "unix")
        and "@" not in parts.path + parts.query + parts.fragment
        and url.isprintable()
        and " " not in url
    )
    if not shaped:
        return _hidden(url)
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        masked = f"{user}:***" if sep or not user else "***"
        netloc = f"{masked}@{hostport}"
    if query:  # redis-py also reads ?password=...
        items = []
        for item in query.split("&"):
            name = item.split("=", 1)[0].lower()
            secret = any(word in name for word in _SECRET_PARAMS)
            items.append(f"{item.split('=', 1)[0]}=***" if secret else item)
        query = "&".join(items)
    # Built by hand: urlunsplit would turn unix:///path into unix:/path.
    text = f"{parts.scheme}://{netloc}{parts.path}"
    return text + (f"?{query}" if query else "") + ("#***" if parts.fragment else "")
