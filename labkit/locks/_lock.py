"""Library: Lock, on one server (or one cluster slot), with fencing tokens."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, NamedTuple

import redis

from labkit.core.args import DAY, check_seconds, check_tag
from labkit.core.clients import check_client
from labkit.core.direct import Direct
from labkit.core.keys import key_part
from labkit.core.scripts import Script
from labkit.core.wait import EXPIRY_GRACE
from labkit.errors import LockError, LockNotOwnedError, LockTimeoutError

__all__ = ["Lease", "Lock"]

ACQUIRE = Script("locks_acquire")
RELEASE = Script("locks_release")
EXTEND = Script("locks_extend")


class Lease(NamedTuple):
    """What a holder gets from ``acquire``.

    Attributes:
        name: The lock's name.
        token: The holder's random token: release and extend compare it with
            the one stored, so only this holder can release or extend.
        fence: The fencing token, 1 for the lock's first acquisition and one
            more for each after. Send it with every write to a storage that
            refuses tokens older than the newest it has seen. ``None`` for a
            :class:`~labkit.locks.Redlock`, which has no single counter.
        validity: Seconds the lease was sure to last when ``acquire``
            returned: the TTL minus the time the request took (and, for a
            Redlock, minus the clock-drift allowance).
        valid_until: ``time.monotonic()`` when that validity runs out.
        votes: Servers that granted it (1 for a :class:`Lock`).
    """

    name: str
    token: str
    fence: int | None
    validity: float
    valid_until: float
    votes: int = 1

    def remaining(self) -> float:
        """Seconds of validity left by this process's clock (<= 0: expired)."""
        return self.valid_until - time.monotonic()


def check_ttl(ttl: Any) -> float:
    """A lease length: 1 ms to one day."""
    return check_seconds("ttl", ttl, min=0.001, max=DAY, min_open=False)


def ms(seconds: float) -> int:
    """Whole milliseconds, at least 1."""
    return max(1, round(seconds * 1000))


def acquire_wait(holder: Any, blocking: Any, timeout: Any, what: str) -> float:
    """The checks :class:`Lock` and ``Redlock`` make before a first try.

    Returns the seconds to keep trying (``holder.timeout`` when ``timeout`` is
    None). Refuses a non-bool ``blocking``, a bad ``timeout``, and a holder
    that still has an unexpired lease (one object per holder).
    """
    if not isinstance(blocking, bool):
        raise TypeError(f"blocking={blocking!r}: must be True or False")
    wait = (
        holder.timeout
        if timeout is None
        else check_seconds("timeout", timeout, min=0, max=DAY, min_open=False)
    )
    lease = holder.lease
    if lease is not None and lease.remaining() > 0:
        fence = "" if lease.fence is None else f" (fence {lease.fence})"
        raise LockError(
            f"{what}: this object already holds a lease{fence}; release it "
            f"first, or make one {type(holder).__name__} object per holder",
            name=holder.name,
            key=holder.key,
        )
    return wait


def release_on_exit(release: Callable[[], Any], exc: BaseException | None) -> None:
    """Release at the end of a ``with`` block.

    A lost lease is an error when the block succeeded (it ran unprotected);
    when the block raised, the loss is added as a note under its own error.
    """
    if exc is None:
        release()
        return
    try:
        release()
    except LockNotOwnedError as lost:
        exc.add_note(f"Also: {lost}")


class Lock:
    """A lock held by one holder at a time, with expiry and fencing tokens.

    Args:
        client: A ``redis.Redis`` or ``RedisCluster`` (the name is a hash tag,
            so both keys live in one slot). Give it a ``socket_timeout``: a
            request to a frozen server waits as long as the client lets it.
        name: What the lock protects; it becomes the keys' hash tag, so it is
            non-empty and has no braces.
        ttl: Seconds a lease lasts unless extended (0.001 to 86400). A holder
            that dies frees the lock after at most this long; one that pauses
            longer loses it without knowing (see ``fence``).
        timeout: Longest wait, in seconds, of a blocking ``acquire`` and of
            ``with lock:`` (0 to 86400).
        retry_interval: Mean seconds between tries while waiting (randomised
            by +-50% so that waiters do not retry in lockstep).
        prefix: Start of the keys (no braces).

    Keys (``labkit:lock`` is the default prefix):
        ``labkit:lock:{<name>}`` (string): the holder's random token, PX ttl, so
        a lock whose holder died frees itself.
        ``labkit:lock:{<name>}:fence`` (string): the fencing counter, INCR in the
        same script as each acquisition; no TTL: it must never go backwards,
        or a storage that saw token 57 would refuse every later holder (and
        one that forgot would accept stale writers). Bounded: one integer per
        lock name. It is only as durable as the server: one that restarts
        empty starts it again at 1, and a storage that remembers higher
        tokens then refuses every new holder (safe, but stuck until reset).
        A failover can do worse: a replica promoted before it received the
        last ``INCR`` hands out the same number twice. Where that matters,
        confirm the acquisition with ``WAIT`` on the same connection before
        acting on the token, and have the storage refuse an equal token from
        another writer; the token source itself is only as linearizable as
        the server's replication (it is asynchronous).

    A phantom lease: ``acquire`` sends its script and waits at most the
    client's ``socket_timeout`` for the answer. If the server is frozen (a
    pause, a stalled disk) the call fails with ``TimeoutError``, yet the
    server runs the script when it resumes: the key is then held, for
    ``ttl``, with a token nobody holds, and a fence number is used up.
    Nothing is lost (no one writes under that token), but the next holder
    waits out the ``ttl``. A caller that got ``TimeoutError`` from
    ``acquire`` should treat the lock as possibly taken: retry with a
    bounded wait (``acquire(timeout=...)`` covers one ``ttl``), and keep the
    ``ttl`` short enough that such a wait is acceptable.

    One ``Lock`` object is one holder: a thread or process that needs the
    lock makes its own (the token of the current lease is kept on the
    object). Acquire and release are one round trip each (``EVALSHA``, the
    call packed once per object: see :class:`~labkit.core.direct.Direct`).
    Like redis-py's ``Lock``, :meth:`release` returns None and raises
    :class:`~labkit.errors.LockNotOwnedError` when the lease was lost, as
    :meth:`Redlock.release <labkit.locks.Redlock.release>` does.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        name: str,
        ttl: float,
        *,
        timeout: float = 10.0,
        retry_interval: float = 0.05,
        prefix: str = "labkit:lock",
    ) -> None:
        self.client = check_client(client, owner="Lock", cluster=True)
        self.name = check_tag("name", name)
        self.ttl = check_ttl(ttl)
        self.timeout = check_seconds("timeout", timeout, min=0, max=DAY, min_open=False)
        self.retry_interval = check_seconds(
            "retry_interval", retry_interval, min=0.001, max=60, min_open=False
        )
        self.prefix = check_tag("prefix", prefix)
        self.lease: Lease | None = None  #: the lease this holder holds, if any
        self.key = f"{self.prefix}:{{{key_part(self.name)}}}"  #: the holder's token
        self.fence_key = f"{self.key}:fence"  #: the fencing counter
        self._acquire = Direct(ACQUIRE, self.client, [self.key, self.fence_key], 2)
        self._release = Direct(RELEASE, self.client, [self.key], 1)

    def __repr__(self) -> str:
        return f"Lock({self.name!r}, ttl={self.ttl:g})"

    # --- acquiring ----------------------------------------------------------
    def acquire(
        self, *, blocking: bool = True, timeout: float | None = None
    ) -> Lease | None:
        """Take the lock; return the lease, or None if it stayed taken.

        Args:
            blocking: Wait (up to ``timeout``) while someone else holds it;
                False makes a single try.
            timeout: Seconds to wait at most (default: the lock's ``timeout``),
                plus 2 ms: a holder's lease that ends at the deadline is gone
                by then (the server frees a key after its last millisecond).

        Raises:
            LockError: This object already holds an unexpired lease (make one
                ``Lock`` per holder), or a key holds another type of value.
            redis.RedisError: The server failed or did not answer in the
                client's ``socket_timeout``.
        """
        wait = acquire_wait(self, blocking, timeout, f"lock {self.name!r}")
        token = secrets.token_hex(16)
        ttl_ms = ms(self.ttl)
        sent = time.monotonic()
        deadline = sent + wait + EXPIRY_GRACE
        while True:
            reply = self._run(self._acquire, token, ttl_ms)
            if reply > 0:  # taken: the reply is the fencing token
                validity = self.ttl - (time.monotonic() - sent)
                if validity > 0:
                    self.lease = Lease(
                        self.name, token, reply, validity, sent + self.ttl
                    )
                    return self.lease
                # The answer took longer than the lease: it is gone already.
                self._run(self._release, token)
            left = deadline - time.monotonic()
            if not blocking or left <= 0:
                return None
            pause = self.retry_interval * random.uniform(0.5, 1.5)
            if reply < 0:  # no use trying before the holder's lease can end
                pause = max(pause, min(-reply / 1000, self.retry_interval * 4))
            time.sleep(min(pause, left))
            sent = time.monotonic()

    def release(self) -> None:
        """Release the lease this object holds.

        Raises:
            LockNotOwnedError: The lease expired (another holder may have the
                lock now, and it is left alone), or nothing was held.
            redis.RedisError: The server failed; the lease is kept, so the
                release can be tried again.
        """
        lease = self.lease
        if lease is None:
            raise LockNotOwnedError(
                f"lock {self.name!r}: this Lock object holds no lease to release",
                name=self.name,
                key=self.key,
                token="",
            )
        released = self._run(self._release, lease.token)  # errors: keep it
        self.lease = None
        if not released:
            raise self._lost(lease, "release")

    def extend(self, ttl: float | None = None) -> Lease:
        """Make the held lease last ``ttl`` seconds from now (default: the TTL).

        Returns:
            The renewed lease (same token and fence).

        Raises:
            LockNotOwnedError: The lease had already expired; nothing changed.
        """
        new_ttl = self.ttl if ttl is None else check_ttl(ttl)
        lease = self.lease
        if lease is None:
            raise LockNotOwnedError(
                f"lock {self.name!r}: this Lock object holds no lease to extend",
                name=self.name,
                key=self.key,
                token="",
            )
        sent = time.monotonic()
        if not self._run(EXTEND, lease.token, ms(new_ttl)):
            self.lease = None
            raise self._lost(lease, "extend")
        validity = new_ttl - (time.monotonic() - sent)
        self.lease = lease._replace(validity=validity, valid_until=sent + new_ttl)
        return self.lease

    def locked(self) -> bool:
        """True if anyone holds the lock right now (one ``EXISTS``)."""
        return bool(self.client.exists(self.key))

    def _run(self, script: Direct | Script, *args: str | int) -> Any:
        try:
            if isinstance(script, Direct):
                return script(*args)
            return script(self.client, [self.key], args)
        except redis.ResponseError as exc:
            keys = [self.key, self.fence_key]
            if "WRONGTYPE" not in str(exc):
                raise
            text = str(exc)
            if " holds a " in text:  # the script named the key and what it found
                key = next((k for k in keys if f"{k} holds" in text), keys[0])
                what = text.removeprefix("WRONGTYPE ")
            else:  # a bare WRONGTYPE from a command: look at the keys
                found = {k: self.client.type(k) for k in keys}
                key, kind = next(
                    ((k, t) for k, t in found.items() if t not in ("none", "string")),
                    (keys[0], found[keys[0]]),
                )
                what = f"{key} holds a {kind}, not a lock token (a string)"
            raise LockError(
                f"lock {self.name!r}: {what}; nothing was changed (delete the key "
                "or choose another name or prefix)",
                name=self.name,
                key=key,
            ) from exc

    def _lost(self, lease: Lease, action: str) -> LockNotOwnedError:
        late = -lease.remaining()
        when = f"{late:.3f} s ago" if late > 0 else "early (deleted or flushed?)"
        return LockNotOwnedError(
            f"lock {self.name!r}: cannot {action}, the lease with fence "
            f"{lease.fence} is no longer held (it expired {when}); nothing was "
            "changed, and whoever holds the lock now keeps it",
            name=self.name,
            key=self.key,
            token=lease.token,
        )

    # --- context manager ------------------------------------------------------
    def __enter__(self) -> Lease:
        lease = self.acquire(blocking=True)
        if lease is None:
            raise LockTimeoutError(
                f"lock {self.name!r}: still held by another after {self.timeout:g} s",
                name=self.name,
                key=self.key,
                timeout=self.timeout,
            )
        return lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        release_on_exit(self.release, exc)
