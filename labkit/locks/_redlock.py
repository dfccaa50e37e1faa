"""Library: Redlock, a lease granted by a majority of independent servers."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis

from labkit.core.args import DAY, check_number, check_seconds, check_tag
from labkit.core.clients import check_client
from labkit.core.keys import key_part
from labkit.core.scripts import Arg, Script
from labkit.core.wait import EXPIRY_GRACE
from labkit.errors import LockError, LockNotOwnedError, LockTimeoutError
from labkit.locks._lock import (
    EXTEND,
    RELEASE,
    Lease,
    acquire_wait,
    check_ttl,
    ms,
    release_on_exit,
)
from labkit.locks._multiplex import Multiplexed

__all__ = ["Redlock"]

VOTE = Script("locks_redlock_acquire")


def _yes(reply: Any) -> bool:
    return type(reply) is int and reply == 1


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _where(client: redis.Redis) -> tuple[Any, ...]:
    """The server a client talks to: host (loopback names as one), port, path.

    Not the db: two databases of one server live and die together (one
    process, one memory, one restart), so they are not independent votes.
    """
    kw = client.connection_pool.connection_kwargs
    host = str(kw.get("host") or "").lower()
    host = "localhost" if host in _LOOPBACK else host
    return (host, kw.get("port"), kw.get("path"))


class Redlock:
    """A lock granted by a majority of N independent servers (Redlock).

    Args:
        clients: One ``redis.Redis`` per server (N >= 1, 5 in the Redlock
            description), each an independent server: not replicas of one
            another, not a cluster. Their settings are used to open the
            Redlock's own connections (see :class:`Multiplexed`).
        name: What the lock protects (non-empty, no braces).
        ttl: Seconds a lease lasts on each server (0.001 to 86400).
        timeout: Longest wait of a blocking ``acquire``, in seconds.
        retry_interval: Mean seconds between attempts (randomised by +-50%, so
            that clients that failed together do not retry together).
        server_timeout: Seconds one attempt waits for the servers' answers
            (default: a tenth of ``ttl``, at most 0.5 s). A down or frozen
            server costs at most this long, not the whole lease.
        drift_factor: Allowance for the servers' clocks running at different
            rates, as a fraction of ``ttl`` (2 ms are added): 0 to 0.5.
        prefix: Start of the key (no braces).

    Keys (on each server; ``labkit:redlock`` is the default prefix):
        ``labkit:redlock:<name>`` (string): the holder's random token, PX ttl.

    An attempt sends ``SET key token NX PX ttl`` (in a script that first
    checks the key's type) to every server at once, and counts the servers
    that granted it. It holds the lock if a majority did and time is left:
    ``validity = ttl - elapsed - (ttl * drift_factor + 2 ms)``. Otherwise it
    releases on every server (a compare-and-delete, so others' keys stay) and
    tries again after a random pause. A Redlock has no fencing token: the
    servers have no common counter.

    One Redlock object is one holder (it keeps the lease's token and its own
    connections): :meth:`close` closes them when it is no longer needed.
    """

    def __init__(
        self,
        clients: Sequence[redis.Redis],
        name: str,
        ttl: float,
        *,
        timeout: float = 10.0,
        retry_interval: float = 0.05,
        server_timeout: float | None = None,
        drift_factor: float = 0.01,
        prefix: str = "labkit:redlock",
    ) -> None:
        if isinstance(clients, redis.Redis | redis.RedisCluster | str | bytes):
            raise TypeError(
                f"clients={clients!r}: must be a list of redis.Redis, one per "
                "server (a single client is one server: write [client])"
            )
        self.clients = list(clients)
        if not 1 <= len(self.clients) <= 99:
            raise ValueError(
                f"clients: {len(self.clients)} given, must be 1 to 99 servers "
                "(5 is usual)"
            )
        seen: dict[tuple[Any, ...], int] = {}
        for i, client in enumerate(self.clients):
            check_client(
                client,
                owner="Redlock",
                cluster="Redlock needs independent servers, one redis.Redis each",
            )
            where = _where(client)
            if where in seen:
                raise ValueError(
                    f"clients[{i}] is the same server as clients[{seen[where]}] "
                    f"({where[2] or f'{where[0]}:{where[1]}'}; another db of one "
                    "server is not another server): Redlock needs N independent "
                    "servers"
                )
            seen[where] = i
        self.name = check_tag("name", name)
        self.ttl = check_ttl(ttl)
        self.timeout = check_seconds("timeout", timeout, min=0, max=DAY, min_open=False)
        self.retry_interval = check_seconds(
            "retry_interval", retry_interval, min=0.001, max=60, min_open=False
        )
        self.server_timeout = (
            min(0.5, self.ttl / 10)
            if server_timeout is None
            else check_seconds("server_timeout", server_timeout, max=60)
        )
        self.drift_factor = check_number(
            "drift_factor", drift_factor, min=0, max=0.5, unit="(a fraction of ttl)"
        )
        self.prefix = check_tag("prefix", prefix)
        self.quorum = len(self.clients) // 2 + 1
        self.servers = Multiplexed(self.clients, self.server_timeout)
        self.lease: Lease | None = None  #: the lease this holder holds, if any
        self.last_votes: list[Any] = []  #: each server's answer to the last try
        #: Servers that still held the lease at the last :meth:`release`.
        self.released = 0

    def __repr__(self) -> str:
        return (
            f"Redlock({self.name!r}, ttl={self.ttl:g}, servers={len(self.clients)}, "
            f"quorum={self.quorum})"
        )

    @property
    def key(self) -> str:
        """The lock's key on every server."""
        return f"{self.prefix}:{key_part(self.name)}"

    def _validity(self, ttl: float, sent: float) -> float:
        drift = ttl * self.drift_factor + 0.002
        return ttl - (time.monotonic() - sent) - drift

    def acquire(
        self, *, blocking: bool = True, timeout: float | None = None
    ) -> Lease | None:
        """Take the lock on a majority of servers; the lease, or None if taken.

        Args:
            blocking: Try again (up to ``timeout``) while no majority grants it.
            timeout: Seconds to keep trying (default: the lock's ``timeout``),
                plus 2 ms: leases that end at the deadline are gone by then.

        Raises:
            LockError: This object already holds a lease; a server's key holds
                another type of value; or an attempt found too few servers
                answering to make a majority (raised at once, with the first
                error in the message, rather than retried until the timeout).
        """
        wait = acquire_wait(self, blocking, timeout, f"Redlock {self.name!r}")
        deadline = time.monotonic() + wait + EXPIRY_GRACE
        ttl_ms = ms(self.ttl)
        while True:
            token = secrets.token_hex(16)
            sent = time.monotonic()
            votes = self.servers.call(VOTE, [self.key], [token, ttl_ms])
            self.last_votes = votes
            granted = sum(1 for v in votes if _yes(v))
            validity = self._validity(self.ttl, sent)
            wrong = [v for v in votes if isinstance(v, redis.ResponseError)]
            if granted >= self.quorum and validity > 0 and not wrong:
                self.lease = Lease(
                    self.name,
                    token,
                    None,
                    validity,
                    time.monotonic() + validity,
                    granted,
                )
                return self.lease
            failed = [v for v in votes if isinstance(v, Exception)]
            if granted or failed:
                # Even where the answer was lost: the SET may have run there.
                self._on_all(RELEASE, [token])
            if wrong:
                raise LockError(
                    f"Redlock {self.name!r}: {wrong[0]} (delete the key or choose "
                    "another name or prefix)",
                    name=self.name,
                    key=self.key,
                )
            answered = len(self.clients) - len(failed)
            if answered < self.quorum:  # no majority possible: say so, now
                first = f"{type(failed[0]).__name__}: {failed[0]}"
                raise LockError(
                    f"Redlock {self.name!r}: only {answered} of {len(self.clients)} "
                    f"servers answered, a majority needs {self.quorum} (first "
                    f"error: {first})",
                    name=self.name,
                    key=self.key,
                )
            left = deadline - time.monotonic()
            if not blocking or left <= 0:
                return None
            time.sleep(min(left, self.retry_interval * random.uniform(0.5, 1.5)))

    def _on_all(self, script: Script, args: list[Arg]) -> int:
        replies = self.servers.call(script, [self.key], args)
        return sum(1 for v in replies if _yes(v))

    def release(self) -> None:
        """Release the lease on every server.

        Returns None, as :meth:`Lock.release <labkit.locks.Lock.release>` does;
        how many servers still held it is left in :attr:`released`.

        Raises:
            LockNotOwnedError: Fewer than a majority still held this lease (it
                expired or a server lost it, and another may hold the lock
                now); the keys of other holders are left alone.
        """
        lease, self.lease = self.lease, None
        if lease is None:
            raise LockNotOwnedError(
                f"Redlock {self.name!r}: this object holds no lease to release",
                name=self.name,
                key=self.key,
                token="",
            )
        held = self.released = self._on_all(RELEASE, [lease.token])
        if held < self.quorum:
            raise self._lost(lease, "release", held)

    def extend(self, ttl: float | None = None) -> Lease:
        """Renew the held lease on every server for ``ttl`` seconds from now.

        Raises:
            LockNotOwnedError: Fewer than a majority still held it, or no
                validity would be left; the lease is then released everywhere.
        """
        new_ttl = self.ttl if ttl is None else check_ttl(ttl)
        lease = self.lease
        if lease is None:
            raise LockNotOwnedError(
                f"Redlock {self.name!r}: this object holds no lease to extend",
                name=self.name,
                key=self.key,
                token="",
            )
        sent = time.monotonic()
        held = self._on_all(EXTEND, [lease.token, ms(new_ttl)])
        validity = self._validity(new_ttl, sent)
        if held < self.quorum or validity <= 0:
            self.lease = None
            self._on_all(RELEASE, [lease.token])
            raise self._lost(lease, "extend", held)
        self.lease = lease._replace(
            validity=validity, valid_until=time.monotonic() + validity, votes=held
        )
        return self.lease

    def _lost(self, lease: Lease, action: str, held: int) -> LockNotOwnedError:
        return LockNotOwnedError(
            f"Redlock {self.name!r}: cannot {action}, only {held} of "
            f"{len(self.clients)} servers still held this lease (a majority is "
            f"{self.quorum}); it was lost, and another holder may have the lock",
            name=self.name,
            key=self.key,
            token=lease.token,
        )

    def close(self) -> None:
        """Close this holder's connections (the clients are left alone)."""
        self.servers.close()

    def __enter__(self) -> Lease:
        lease = self.acquire(blocking=True)
        if lease is None:
            raise LockTimeoutError(
                f"Redlock {self.name!r}: no majority after {self.timeout:g} s",
                name=self.name,
                key=self.key,
                timeout=self.timeout,
            )
        return lease

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        release_on_exit(self.release, exc)
