"""Lab: Redlock on N real servers, killed and restarted during a holder's lease."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

import redis
from tqdm.auto import tqdm

from labkit.core.args import check_count, check_int, check_seconds, check_tag
from labkit.errors import LockNotOwnedError
from labkit.locks import Redlock
from labkit.server import Server, flushdb, no_retry

__all__ = ["MODES", "RedlockLab", "Trial"]

#: How a crashed server comes back: persistence, and the wait before restart.
MODES = {
    "no persistence": ({}, False),
    "appendfsync always": ({"appendonly": "yes", "appendfsync": "always"}, False),
    "delayed restart": ({}, True),
}


class Trial(NamedTuple):
    """One Redlock crash trial (see :meth:`RedlockLab.trial`).

    Attributes:
        mode: A key of :data:`MODES`.
        busy: Servers a competitor held while A acquired (A could not get them).
        a_votes: Servers that granted A's lease.
        crashed: The server killed during A's lease.
        b_votes: Servers that granted B's last attempt (0 if it never got one).
        two_holders: B acquired while A's lease was still valid.
        overlap: Seconds both leases were valid at once (0 if not).
    """

    mode: str
    busy: tuple[int, ...]
    a_votes: int
    crashed: int
    b_votes: int
    two_holders: bool
    overlap: float


class RedlockLab:
    """N real servers for Redlock experiments (kill, restart, inspect).

    Args:
        n: Number of servers (an odd number >= 3 makes sense; 5 is usual).
        ttl: The lease the trials use, in seconds.
        name: The lock's name.

    Use as a context manager, or call :meth:`close`: it stops the servers.
    """

    def __init__(self, n: int = 5, *, ttl: float = 1.0, name: str = "report") -> None:
        self.n = check_count("n", n, max=15)
        self.ttl = check_seconds("ttl", ttl, min=0.2, max=60, min_open=False)
        self.name = check_tag("name", name)
        self.mode = "no persistence"
        self.servers = [Server() for _ in range(self.n)]
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.close()
            raise
        self.admin = [self._client(s) for s in self.servers]

    @staticmethod
    def _client(server: Server) -> redis.Redis:
        return server.client(
            retry=no_retry(), socket_timeout=1, socket_connect_timeout=1
        )

    def clients(self) -> list[redis.Redis]:
        """A fresh client per server (one set per holder): no retries."""
        return [self._client(s) for s in self.servers]

    def redlock(self, ttl: float | None = None, **kwargs: Any) -> Redlock:
        """A Redlock on these servers with fresh clients (``server_timeout`` 0.2 s).

        ``ttl`` defaults to the lab's; a walk-through that a learner may pause
        in gives its leases longer (the trials keep the lab's short one).
        """
        kwargs.setdefault("server_timeout", 0.2)
        return Redlock(self.clients(), self.name, ttl or self.ttl, **kwargs)

    def holders(self, holders: Mapping[str, Redlock]) -> list[str]:
        """Who holds the lock on each server: a label of ``holders``
        (``{"A": a, "B": b}``), ``"-"`` (free), ``"other"`` or ``"down"``."""
        tokens = {h.lease.token: label for label, h in holders.items() if h.lease}
        key = next(iter(holders.values())).key
        out = []
        for client in self.admin:
            try:
                token = client.get(key)
            except redis.ConnectionError:
                out.append("down")
                continue
            out.append("-" if token is None else tokens.get(str(token), "other"))
        return out

    def set_mode(self, mode: str) -> None:
        """Restart every server with the persistence of ``mode`` (emptied)."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: must be one of {list(MODES)}")
        config, _ = MODES[mode]
        for server in self.servers:
            server.config.pop("appendonly", None)
            server.config.pop("appendfsync", None)
            server.config.update(config)
            server.restart()  # a graceful stop: an empty, known state
        self.mode = mode
        self.flush()

    def flush(self) -> None:
        """Empty every server (they were started here)."""
        for client in self.admin:
            flushdb(client)

    def kill(self, i: int) -> None:
        """SIGKILL server ``i``, as a crash would."""
        self.servers[i].kill()

    def restart(self, i: int) -> None:
        """Start server ``i`` again (same port and data directory)."""
        self.servers[i].restart()

    def trial(self, rng: random.Random, *, busy: int = 2, window: float = 0.3) -> Trial:
        """A holds the lock; one server crashes and restarts; can B get it too?

        1. A competitor's attempt holds ``busy`` servers, chosen at random,
           while A acquires: A gets the others (a bare majority when ``busy``
           is ``(n - 1) // 2``). The competitor then gives up and frees them.
        2. One server, chosen at random, is killed (SIGKILL) and restarted
           at once, or after ``ttl`` in the "delayed restart" mode.
        3. B tries for ``window`` seconds (never past A's lease).
        """
        check_int("busy", busy, min=0, max=self.n - (self.n // 2 + 1))
        _, delayed = MODES[self.mode]
        self.flush()
        a, b = self.redlock(), self.redlock()
        taken = tuple(sorted(rng.sample(range(self.n), busy)))
        for i in taken:
            self.admin[i].set(a.key, "competitor", px=round(self.ttl * 5000))
        a_lease = a.acquire(blocking=False)
        for i in taken:
            self.admin[i].delete(a.key)
        crashed = rng.randrange(self.n)
        self.kill(crashed)
        killed_at = time.monotonic()
        if not delayed:
            self.restart(crashed)
        b_lease, got_at = None, 0.0
        if a_lease is not None and a_lease.remaining() > 0:
            b_lease = b.acquire(timeout=max(0.0, min(window, a_lease.remaining())))
            got_at = time.monotonic()
        b_votes = sum(1 for v in b.last_votes if type(v) is int and v == 1)
        if delayed:
            time.sleep(max(0.0, killed_at + self.ttl - time.monotonic()))
            self.restart(crashed)
        for holder in (b, a):
            with contextlib.suppress(LockNotOwnedError):
                if holder.lease is not None:
                    holder.release()
        for holder in (a, b):
            holder.close()
            for client in holder.clients:
                client.close()
        a_votes = a_lease.votes if a_lease else 0
        both = (
            a_lease is not None and b_lease is not None and got_at < a_lease.valid_until
        )
        overlap = a_lease.valid_until - got_at if both and a_lease else 0.0
        return Trial(self.mode, taken, a_votes, crashed, b_votes, both, overlap)

    def trials(
        self,
        count: int,
        *,
        mode: str,
        seed: int = 0,
        busy: int = 2,
        progress: Callable[..., Any] = tqdm,
    ) -> list[Trial]:
        """``count`` trials in ``mode`` (the servers are restarted into it first)."""
        check_count("count", count, max=10_000)
        self.set_mode(mode)
        rng = random.Random(seed)
        return [self.trial(rng, busy=busy) for _ in progress(range(count), desc=mode)]

    def close(self) -> None:
        """Stop every server and remove its data."""
        for client in getattr(self, "admin", []):
            client.close()
        for server in self.servers:
            server.close()

    def __enter__(self) -> RedlockLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
