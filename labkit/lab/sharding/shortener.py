"""Lab: the tutorial's URL shortener over several servers, client-side sharding.

The tutorial system (three servers, a short code -> URL with a one-hour TTL,
redirect or 404, hit/miss counts), rebuilt on :mod:`labkit.sharding` so the
placement rule is a choice: the tutorial's ``sum(chars) % 3`` is
``ModuloRouter(names, hash=char_sum)``; a :class:`~labkit.sharding.HashRing`
makes adding a fourth server cheap.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import redis

from labkit.errors import LabkitError
from labkit.server import flushdb
from labkit.sharding import Router, ShardedClient, hash64, move_keys

__all__ = ["Growth", "Resolution", "Shortener", "ShortenerStats", "grow"]

_ALPHABET = string.digits + string.ascii_letters  # base 62


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
        client: A :class:`~labkit.sharding.ShardedClient` over the servers.
        prefix: Namespace of every key.
        ttl: Default lifetime of a short link, in seconds (the tutorial's 3600).
        length: Characters per code (base 62; 7 gives 62**7, about 3.5e12).

    Keys, on the server that owns the code:
        ``<prefix>:url:<code>`` (string): the long URL, expiring after its TTL.
    Keys on every server:
        ``<prefix>:stats`` (hash): fields ``lookups`` and ``misses`` for the
        lookups that server answered. Counting where the code lives keeps a
        lookup at one round trip and avoids one hot counter key.

    A code is derived from the URL (BLAKE2b, base 62), so shortening the same
    URL twice gives the same code; a clash with another URL is resolved by
    ``SET NX`` and a salted retry.
    """

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
        if not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"ttl={ttl!r}: must be an int number of seconds >= 1")
        if not isinstance(length, int) or not 4 <= length <= 10:
            raise ValueError(f"length={length!r}: must be an int from 4 to 10")
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self.length = length

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

    def shorten(self, url: str, ttl: int | None = None) -> str:
        """Store ``url`` under a short code and return the code.

        Args:
            url: An ``http://`` or ``https://`` URL.
            ttl: Lifetime in seconds; the shortener's default if None.

        Raises:
            ValueError: Not an http(s) URL, or ``ttl < 1``.
        """
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url={url!r}: expected an http:// or https:// URL")
        ttl = self.ttl if ttl is None else ttl
        if not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"ttl={ttl!r}: must be an int number of seconds >= 1")
        for attempt in range(8):
            code = self._code(url, attempt)
            key = self.url_key(code)
            if self.client.set(key, url, ex=ttl, nx=True):
                return code
            if self.client.get(key) == url:
                return code  # already shortened: same code, TTL left as is
        raise LabkitError(f"no free code for {url!r} after 8 attempts")

    def resolve(self, code: str) -> Resolution:
        """Look a code up: 302 with the URL, or 404. Counts the lookup."""
        key = self.url_key(code)
        pipe = self.client.client_for(key).pipeline(transaction=False)
        pipe.get(key)
        pipe.hincrby(self.stats_key, "lookups", 1)
        url, _ = pipe.execute()
        if url is None:
            self.client.client_for(key).hincrby(self.stats_key, "misses", 1)
            return Resolution(404, None)
        return Resolution(302, url)

    def stats(self) -> ShortenerStats:
        """Lookups, hits and misses summed over every server."""
        lookups = misses = 0
        for server in self.client.clients.values():
            counts = server.hgetall(self.stats_key)
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
        moved: Keys :func:`~labkit.sharding.move_keys` copied to their new owner.
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
    copies the misplaced keys, and every link is looked up again.

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
