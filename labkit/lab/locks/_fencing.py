"""Lab: a storage service that checks fencing tokens; a holder paused past its lease.

The paused holder is a real process (``spawn``), stopped with SIGSTOP.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from types import TracebackType
from typing import Any, NamedTuple

from tqdm.auto import tqdm

import labkit
from labkit.core.args import check_count, check_name, check_seconds, check_tag
from labkit.core.scripts import Script
from labkit.errors import LockNotOwnedError
from labkit.locks import Lease, Lock
from labkit.server import no_retry

__all__ = ["FencedStore", "PauseExperiment", "PauseRound", "Write"]

WRITE = Script("locks_fenced_write", package="labkit.lab")


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
        strict: With ``fencing``, also refuse a token *equal* to the highest
            when another writer brought it first: two holders that were
            given the same number (a fence counter that lost its last
            ``INCR`` in a failover) cannot both write.
        max_log: Write attempts kept in the log.

    Keys:
        ``lab:storage:{<name>}:data`` (hash): item -> value; no TTL (the
        lab's data: a few items, emptied by the notebook's cleanup).
        ``lab:storage:{<name>}:fence`` (string): the highest token accepted;
        no TTL (like the lock's counter, it must not go backwards).
        ``lab:storage:{<name>}:holder`` (string): the writer that brought
        the highest token; no TTL (one short name).
        ``lab:storage:{<name>}:log`` (stream): every write attempt; no TTL,
        bounded by MAXLEN ~ max_log.
    """

    def __init__(
        self,
        client: Any,
        name: str = "reports",
        *,
        fencing: bool = True,
        strict: bool = False,
        max_log: int = 10_000,
    ) -> None:
        if not isinstance(fencing, bool):
            raise TypeError(f"fencing={fencing!r}: must be True or False")
        if not isinstance(strict, bool):
            raise TypeError(f"strict={strict!r}: must be True or False")
        if strict and not fencing:
            raise ValueError("strict=True needs fencing=True (it is a stricter check)")
        self.client = client
        self.name = check_tag("name", name)
        self.fencing = fencing
        self.strict = strict
        self.max_log = check_count("max_log", max_log, max=1_000_000)
        base = f"lab:storage:{{{self.name}}}"
        self.keys = [f"{base}:data", f"{base}:fence", f"{base}:log", f"{base}:holder"]

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
                int(self.fencing) + int(self.strict),
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
