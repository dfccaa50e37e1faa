"""Lab: lock experiments: a fenced storage, a paused holder, Redlock crash trials.

Used by notebook 09 and the tests. The holder that pauses is a real process
(``spawn``), stopped with SIGSTOP; the Redlock servers are real servers,
killed with SIGKILL and restarted.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

import redis
from tqdm.auto import tqdm

import labkit
from labkit.core.args import (
    check_count,
    check_int,
    check_name,
    check_seconds,
    check_tag,
)
from labkit.core.scripts import Script
from labkit.errors import LockNotOwnedError
from labkit.locks import Lease, Lock, Redlock
from labkit.server import Server, flushdb, no_retry

__all__ = [
    "MODES",
    "FencedStore",
    "PauseExperiment",
    "PauseRound",
    "RedlockLab",
    "Trial",
    "Write",
]

WRITE = Script("locks_fenced_write")


class Write(NamedTuple):
    """One write attempt the storage service saw (see :meth:`FencedStore.log`)."""

    writer: str
    token: int
    item: str
    value: str
    accepted: bool


class FencedStore:
    """A tiny storage service that can refuse writes with stale fencing tokens.

    It stands for any database that can make a write conditional (a file
    server, a SQL row with a version column): here a hash on a Redis server.

    Args:
        client: Where the data lives (``redis.Redis``, ``decode_responses``).
        name: The store's name (non-empty, no braces).
        fencing: True: refuse a write whose token is below the highest token
            already accepted. False: accept everything, as a storage that
            knows nothing of fencing does.
        max_log: Write attempts kept in the log.

    Keys:
        ``lab:storage:{<name>}:data`` (hash): item -> value; no TTL (the
        lab's data: a few items, emptied by the notebook's cleanup).
        ``lab:storage:{<name>}:fence`` (string): the highest token accepted;
        no TTL (like the lock's counter, it must not go backwards).
        ``lab:storage:{<name>}:log`` (stream): every write attempt; no TTL,
        bounded by MAXLEN ~ max_log.
    """

    def __init__(
        self,
        client: Any,
        name: str = "reports",
        *,
        fencing: bool = True,
        max_log: int = 10_000,
    ) -> None:
        if not isinstance(fencing, bool):
            raise TypeError(f"fencing={fencing!r}: must be True or False")
        self.client = client
        self.name = check_tag("name", name)
        self.fencing = fencing
        self.max_log = check_count("max_log", max_log, max=1_000_000)
        base = f"lab:storage:{{{self.name}}}"
        self.keys = [f"{base}:data", f"{base}:fence", f"{base}:log"]

    def write(self, item: str, value: Any, *, token: int, writer: str) -> bool:
        """Write ``value`` to ``item`` with fencing ``token``; False if refused."""
        ok = WRITE(
            self.client,
            self.keys,
            [
                check_name("item", item),
                str(value),
                token,
                check_name("writer", writer),
                int(self.fencing),
                self.max_log,
            ],
        )
        return bool(ok)

    def read(self, item: str) -> str | None:
        """The value of ``item`` (None if never written)."""
        return self.client.hget(self.keys[0], item)

    def log(self) -> list[Write]:
        """Every write attempt, oldest first."""
        return [
            Write(f["writer"], int(f["token"]), f["item"], f["value"], f["ok"] == "1")
            for _, f in self.client.xrange(self.keys[2])
        ]


# --- a holder paused past its lease ---------------------------------------------


def _holder(url: str, name: str, ttl: float, store: str, conn: Any) -> None:
    """The paused holder's process: lock, read, check, stop itself, write."""
    client = labkit.connect(url, retry=no_retry(), socket_timeout=10)
    lock = Lock(client, name, ttl, timeout=30)
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                return
            storage = FencedStore(client, store, fencing=msg[1])
            lease = lock.acquire()
            assert lease is not None, "the lock stayed taken for 30 s"
            value = int(storage.read("counter") or 0)
            checked = lease.remaining()  # a careful holder checks its lease...
            conn.send(("checked", lease, value, checked, time.monotonic()))
            os.kill(os.getpid(), signal.SIGSTOP)  # ...and the pause comes here
            resumed = time.monotonic()
            accepted = storage.write(
                "counter", value + 1, token=lease.fence or 0, writer="A"
            )
            wrote = time.monotonic()
            try:
                lock.release()
                released = True
            except LockNotOwnedError:
                released = False
            conn.send(("wrote", resumed, wrote, accepted, released))
    finally:
        client.close()


class PauseRound(NamedTuple):
    """One round of :class:`PauseExperiment`; times are ``time.monotonic()``.

    Attributes:
        fencing: Whether the storage checked tokens.
        ttl, pause: The lease and how long holder A was stopped (seconds).
        a_lease, b_lease: The two holders' leases (``valid_until`` ends them).
        a_checked: Seconds of lease A saw left when it checked, just before
            its pause.
        a_paused, a_resumed: When A stopped itself and was continued.
        a_wrote, b_wrote: When each write reached the storage.
        a_accepted, b_accepted: Whether the storage took each write.
        a_released: Whether A's release found its lease (False: it had lost it).
        before, after: The counter before and after the round (two increments
            were made, one by each holder).
    """

    fencing: bool
    ttl: float
    pause: float
    a_lease: Lease
    b_lease: Lease | None
    a_checked: float
    a_paused: float
    a_resumed: float
    a_wrote: float
    b_wrote: float
    a_accepted: bool
    b_accepted: bool
    a_released: bool
    before: int
    after: int

    @property
    def stale_accepted(self) -> bool:
        """A wrote after its lease ended and the storage took it: corruption."""
        return self.a_accepted and self.a_wrote > self.a_lease.valid_until

    @property
    def lost_updates(self) -> int:
        """Accepted increments missing from the counter: writes that each
        holder was told had succeeded, overwritten by the other."""
        return int(self.a_accepted) + int(self.b_accepted) - (self.after - self.before)


class PauseExperiment:
    """Holder A in its own process, paused past its lease; holder B here.

    Each round: A takes the lock, reads a counter from the storage service,
    checks that its lease still has time left, and stops itself (SIGSTOP,
    standing for a GC pause or a swapped-out process) right there, before
    its write. B (this process) takes the lock as soon as it is free, reads
    the counter, writes it plus one with its fencing token and releases. After
    ``pause`` seconds A is continued (SIGCONT) and writes what it computed
    before the pause.

    Args:
        url: The server for the lock and the storage (each process connects).
        ttl: The lock's lease, in seconds.
        name: The lock's name (and the storage's).

    Use as a context manager, or call :meth:`close`: it stops A's process.
    """

    def __init__(self, url: str, *, ttl: float = 0.3, name: str = "reports") -> None:
        self.url = check_name("url", url, max_len=4096)
        self.ttl = check_seconds("ttl", ttl, min=0.05, max=60, min_open=False)
        self.name = check_tag("name", name)
        self.client = labkit.connect(url, retry=no_retry(), socket_timeout=10)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_holder,
            args=(url, name, self.ttl, name, child),
            daemon=True,
            name="labkit-paused-holder",
        )
        self.process.start()
        child.close()

    def _recv(self, timeout: float) -> Any:
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError) as exc:
            self.process.join(5)
            raise RuntimeError(
                f"holder A's process ended (exit code {self.process.exitcode})"
            ) from exc
        raise TimeoutError(f"holder A sent nothing within {timeout:g} s")

    def _wait_stopped(self, timeout: float = 10.0) -> None:
        """Wait until A has stopped itself (waitpid reports a stopped child)."""
        pid = self.process.pid or 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
            if found and os.WIFSTOPPED(status):
                return
            if found:
                raise RuntimeError(f"holder A ended (wait status {status})")
            time.sleep(0.001)
        raise TimeoutError(f"holder A did not stop itself within {timeout:g} s")

    def round(self, *, fencing: bool, pause: float | None = None) -> PauseRound:
        """Run one round; ``pause`` defaults to twice the TTL."""
        pause = 2 * self.ttl if pause is None else check_seconds("pause", pause, max=60)
        storage = FencedStore(self.client, self.name, fencing=fencing)
        lock_b = Lock(self.client, self.name, self.ttl, timeout=pause + 10 * self.ttl)
        before = int(storage.read("counter") or 0)
        self._conn.send(("go", fencing))
        _, a_lease, _, a_checked, a_paused = self._recv(30)
        self._wait_stopped()
        resume_at = a_paused + pause
        b_lease, b_wrote, b_ok, report = None, 0.0, False, None
        stopped = True
        deadline = time.monotonic() + pause + 20 * self.ttl + 10
        while report is None or b_lease is None:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError("a pause round did not finish in time")
            if stopped and now >= resume_at:
                os.kill(self.process.pid or 0, signal.SIGCONT)
                stopped = False
            if b_lease is None and (got := lock_b.acquire(blocking=False)):
                b_lease = got
                value = int(storage.read("counter") or 0)
                b_ok = storage.write(
                    "counter", value + 1, token=got.fence or 0, writer="B"
                )
                b_wrote = time.monotonic()
                with contextlib.suppress(LockNotOwnedError):
                    lock_b.release()
            if report is None and self._conn.poll(0.002):
                report = self._conn.recv()
        _, a_resumed, a_wrote, a_ok, a_released = report
        return PauseRound(
            fencing,
            self.ttl,
            a_resumed - a_paused,
            a_lease,
            b_lease,
            a_checked,
            a_paused,
            a_resumed,
            a_wrote,
            b_wrote,
            a_ok,
            b_ok,
            a_released,
            before,
            int(storage.read("counter") or 0),
        )

    def run(
        self, rounds: int, *, fencing: bool, pause: float | None = None
    ) -> list[PauseRound]:
        """Several rounds (a tqdm bar shows progress)."""
        check_count("rounds", rounds, max=1000)
        return [
            self.round(fencing=fencing, pause=pause)
            for _ in tqdm(range(rounds), desc=f"fencing={fencing}")
        ]

    def close(self) -> None:
        """Stop A's process (continuing it first if it is stopped)."""
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid or 0, signal.SIGCONT)
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)
        self._conn.close()
        self.client.close()

    def __enter__(self) -> PauseExperiment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- Redlock: crashes and restarts ------------------------------------------------

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

    def redlock(self, **kwargs: Any) -> Redlock:
        """A Redlock on these servers with fresh clients (``server_timeout`` 0.2 s)."""
        kwargs.setdefault("server_timeout", 0.2)
        return Redlock(self.clients(), self.name, self.ttl, **kwargs)

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
