"""Lab: the tutorial's URL shortener over several servers, client-side sharding.

The tutorial system (three servers, a short code -> URL with a one-hour TTL,
redirect or 404, hit/miss counts), rebuilt on :mod:`labkit.sharding` so the
placement rule is a choice: the tutorial's ``sum(chars) % 3`` is
``ModuloRouter(names, hash=char_sum)``; a :class:`~labkit.sharding.HashRing`
makes adding a fourth server cheap.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import redis

from labkit.core.args import YEAR, check_int, check_name
from labkit.core.clients import check_client
from labkit.core.scripts import Script
from labkit.errors import LabkitError, ShardUnavailableError, WrongTypeError
from labkit.server import flushdb
from labkit.sharding import Router, ShardedClient, hash64, move_keys

__all__ = [
    "MAX_URL_LENGTH",
    "Growth",
    "Resolution",
    "Shortener",
    "ShortenerStats",
    "check_url",
    "grow",
]

_ALPHABET = string.digits + string.ascii_letters  # base 62
#: Longest URL accepted (browsers and servers commonly stop near 8 KB).
MAX_URL_LENGTH = 8192


def check_url(url: Any) -> str:
    """``url`` if it is an absolute http(s) URL with a host and nothing hidden in it.

    Refused: another scheme (``javascript:``, ``ftp:``); no host
    (``https:///path``); any control character or whitespace, since a CR/LF
    stored here would end up in a redirect's ``Location`` header and split
    the response; more than :data:`MAX_URL_LENGTH` characters.

    Raises:
        TypeError: Not a str.
        ValueError: Any of the above; the message names what is wrong.
    """
    allowed = (
        "must be an http:// or https:// URL with a host, without spaces or "
        f"control characters, at most {MAX_URL_LENGTH} characters"
    )
    if not isinstance(url, str):
        raise TypeError(f"url={url!r}: {allowed}")
    hidden = (c for c in url if c.isspace() or unicodedata.category(c) == "Cc")
    bad = next(hidden, None)
    if bad is not None or not url or len(url) > MAX_URL_LENGTH:
        found = f" (found {bad!r})" if bad is not None else ""
        raise ValueError(f"url={url[:200]!r}: {allowed}{found}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"url={url[:200]!r}: {allowed} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url={url[:200]!r}: {allowed}")
    return url


def _check_prefix(prefix: Any) -> str:
    check_name("prefix", prefix, max_len=128)
    if any(c in prefix for c in "*?[]\\{}"):
        raise ValueError(
            f"prefix={prefix!r}: must not contain glob characters or braces "
            "(*, ?, [, ], \\, {, }): the shortener SCANs for <prefix>:url:*"
        )
    return prefix


class Resolution(NamedTuple):
    """Answer to a lookup, as an HTTP handler would send it.

    Attributes:
        status: 302 (redirect to ``url``) or 404 (unknown or expired code).
        url: The long URL, or None on 404.
    """

    status: int
    url: str | None


class ShortenerStats(NamedTuple):
    """Lookup counters summed over every server.

    Attributes:
        lookups: Calls to :meth:`Shortener.resolve`.
        hits: Lookups that found a URL.
        misses: Lookups that answered 404.
    """

    lookups: int
    hits: int
    misses: int


class Shortener:
    """Short codes for long URLs, each code stored on the server its router picks.

    Args:
        client: A :class:`~labkit.sharding.ShardedClient` over the servers,
            each client made with ``decode_responses=True``.
        prefix: Namespace of every key (no glob characters or braces).
        ttl: Default lifetime of a short link, in seconds (the tutorial's
            3600), at most a year.
        length: Characters per code (base 62; 7 gives 62**7, about 3.5e12).

    Keys:
        ``<prefix>:url:<code>`` (string): the long URL, on the server that owns
        the code; expires after the link's TTL.
        ``<prefix>:stats`` (hash): no TTL (two counters per server, a fixed
        size): fields lookups and misses, on every server, for the lookups
        that server answered. Counting where the code lives keeps a lookup at
        one round trip and avoids one hot counter key.

    A code is derived from the URL (BLAKE2b, base 62), so shortening the same
    URL twice gives the same code; a clash with another URL is resolved by
    ``SET NX`` and a salted retry. URLs are checked by :func:`check_url`.
    """

    #: Looks a code up and counts the lookup, types checked first.
    RESOLVE = Script("shortener_resolve", package="labkit.lab")

    def __init__(
        self,
        client: ShardedClient,
        *,
        prefix: str = "lab:short",
        ttl: int = 3600,
        length: int = 7,
    ) -> None:
        if not isinstance(client, ShardedClient):
            raise TypeError(f"client={client!r}: expected a labkit ShardedClient")
        for server in client.clients.values():
            check_client(server, owner="Shortener", decode=True)
        self.client = client
        self.prefix = _check_prefix(prefix)
        self.ttl = check_int("ttl", ttl, min=1, max=YEAR, what="an int of seconds")
        self.length = check_int("length", length, min=4, max=10)

    @property
    def stats_key(self) -> str:
        """The per-server counters hash."""
        return f"{self.prefix}:stats"

    @property
    def url_pattern(self) -> str:
        """SCAN pattern of every link key (for :func:`labkit.sharding.move_keys`)."""
        return f"{self.prefix}:url:*"

    def url_key(self, code: str) -> str:
        """The key holding the URL of ``code``."""
        return f"{self.prefix}:url:{code}"

    def with_client(self, client: ShardedClient) -> Shortener:
        """The same shortener over other servers (after adding one, say)."""
        return Shortener(client, prefix=self.prefix, ttl=self.ttl, length=self.length)

    def _code(self, url: str, attempt: int) -> str:
        n = hash64(f"{url}#{attempt}" if attempt else url)
        chars = []
        for _ in range(self.length):
            n, digit = divmod(n, 62)
            chars.append(_ALPHABET[digit])
        return "".join(chars)

    def _wrong_type(self, key: str, expected: str) -> WrongTypeError:
        found = str(self.client.client_for(key).type(key))
        return WrongTypeError(
            f"key {key!r} holds a {found}, where the shortener keeps a {expected}; "
            "nothing was written (delete the key or use another prefix)",
            key=key,
            found=found,
            expected=expected,
        )

    def shorten(self, url: str, ttl: int | None = None) -> str:
        """Store ``url`` under a short code and return the code.

        Args:
            url: An ``http://`` or ``https://`` URL (see :func:`check_url`).
            ttl: Lifetime in seconds; the shortener's default if None.

        Raises:
            TypeError, ValueError: A bad URL or TTL (nothing written).
            WrongTypeError: The code's key holds another type.
        """
        check_url(url)
        ttl = self.ttl if ttl is None else ttl
        check_int("ttl", ttl, min=1, max=YEAR, what="an int of seconds")
        for attempt in range(8):
            code = self._code(url, attempt)
            key = self.url_key(code)
            if self.client.set(key, url, ex=ttl, nx=True):
                return code
            try:
                if self.client.get(key) == url:
                    return code  # already shortened: same code, TTL left as is
            except redis.ResponseError as exc:
                if "WRONGTYPE" not in str(exc):
                    raise
                raise self._wrong_type(key, "string") from exc
        raise LabkitError(f"no free code for {url!r} after 8 attempts")

    def resolve(self, code: str) -> Resolution:
        """Look a code up: 302 with the URL, or 404. Counts the lookup.

        One round trip (:attr:`RESOLVE`, printed in notebook 04).

        Raises:
            TypeError, ValueError: ``code`` is not 1 to 64 letters and digits.
            WrongTypeError: The link or counters key holds another type.
        """
        if not isinstance(code, str) or not (
            0 < len(code) <= 64 and code.isascii() and code.isalnum()
        ):
            kind = ValueError if isinstance(code, str) else TypeError
            raise kind(f"code={code!r}: must be 1 to 64 ASCII letters and digits")
        key = self.url_key(code)
        node = self.client.node_for(key)
        server = self.client.clients[node]
        try:
            reply = self.RESOLVE(server, [key, self.stats_key])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ShardUnavailableError(
                f"server {node!r} did not answer the lookup of {key!r}: "
                f"{type(exc).__name__}: {exc}",
                node=node,
                key=key,
                command="EVALSHA",
            ) from exc
        if reply[0] == -1:
            found = str(reply[2])
            expected = "string" if reply[1] == key else "hash"
            raise WrongTypeError(
                f"key {reply[1]!r} holds a {found}, where the shortener keeps a "
                f"{expected}; nothing was written",
                key=str(reply[1]),
                found=found,
                expected=expected,
            )
        return Resolution(302, reply[1]) if reply[0] == 1 else Resolution(404, None)

    def stats(self) -> ShortenerStats:
        """Lookups, hits and misses summed over every server."""
        lookups = misses = 0
        for server in self.client.clients.values():
            try:
                counts = server.hgetall(self.stats_key)
            except redis.ResponseError as exc:
                if "WRONGTYPE" not in str(exc):
                    raise
                raise self._wrong_type(self.stats_key, "hash") from exc
            lookups += int(counts.get("lookups", 0))
            misses += int(counts.get("misses", 0))
        return ShortenerStats(lookups, lookups - misses, misses)

    def links_per_server(self) -> dict[str, int]:
        """``{server name: links stored}`` (a SCAN per server)."""
        return {
            name: len(set(c.scan_iter(match=self.url_pattern, count=1000)))
            for name, c in self.client.clients.items()
        }


class Growth(NamedTuple):
    """What adding servers cost a shortener (see :func:`grow`).

    Attributes:
        broken: Links that answered 404 under the new layout before any move.
        moved: Keys :func:`~labkit.sharding.move_keys` moved to their new owner.
        all_resolve: True if every link answered 302 after the move.
        seconds: Wall time of the move.
    """

    broken: int
    moved: int
    all_resolve: bool
    seconds: float


def grow(
    clients: Mapping[str, redis.Redis],
    make_router: Callable[[Sequence[str]], Router],
    urls: Iterable[str],
    *,
    nodes_before: int,
) -> Growth:
    """Shorten ``urls`` on the first servers, add the others, count and repair.

    Every server in ``clients`` is flushed first. The links are stored over
    the first ``nodes_before`` servers; then a shortener over all of them
    looks each link up (counting 404s), :func:`~labkit.sharding.move_keys`
    moves the misplaced keys, and every link is looked up again.

    Args:
        clients: ``{server name: client}``, in the order servers are added.
        make_router: Builds a router from a list of server names.
        urls: The long URLs to shorten.
        nodes_before: How many of the servers exist before the growth.

    Raises:
        ValueError: ``nodes_before`` not between 1 and ``len(clients) - 1``.
    """
    names = list(clients)
    if not isinstance(nodes_before, int) or not 1 <= nodes_before < len(names):
        raise ValueError(
            f"nodes_before={nodes_before!r}: expected an int from 1 to "
            f"{len(names) - 1} (one less than the {len(names)} servers)"
        )
    for c in clients.values():
        flushdb(c)
    first = {n: clients[n] for n in names[:nodes_before]}
    old = Shortener(ShardedClient(first, make_router(names[:nodes_before])))
    links = [old.shorten(u) for u in urls]
    new = old.with_client(ShardedClient(dict(clients), make_router(names)))
    broken = sum(new.resolve(c).status == 404 for c in links)
    report = move_keys(old.client, new.client, match=old.url_pattern)
    fixed = all(new.resolve(c).status == 302 for c in links)
    return Growth(broken, report.moved, fixed, report.seconds)
