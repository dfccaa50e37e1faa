"""Library: labkit's exceptions: one base class, subclasses that carry context.

Only the errors the library (the pattern packages and :mod:`labkit.core`) raises
live here. The server manager's are in :mod:`labkit.server.errors`, the lab's
in :mod:`labkit.lab.errors`; all derive from :class:`LabkitError`. Every error
takes ``(message, *, context...)`` and keeps its context as attributes.

A key holding the wrong type is one error for every pattern,
:class:`WrongTypeError` (``key``, ``found``, ``expected``). Its old per-pattern
names (``CacheKeyTypeError``, ``QueueKeyError``, ``HistoryKeyError``,
``LimiterKeyError``, ``SeriesKeyError``, and ``CacheError``, whose only
subclass it was) still resolve to it, with a ``DeprecationWarning``, so
``except`` clauses written for them keep working.
"""

from __future__ import annotations

import warnings

__all__ = [
    "CrossSlotError",
    "FlagStoreError",
    "LabkitError",
    "ListenerError",
    "LockError",
    "LockNotOwnedError",
    "LockTimeoutError",
    "MalformedMessageError",
    "MoveError",
    "QueueFullError",
    "ServerVersionError",
    "ShardUnavailableError",
    "TrackingError",
    "UnknownFanOutError",
    "WorkerError",
    "WrongTypeError",
]

#: Old names of :class:`WrongTypeError`, kept (deprecated) for ``except`` clauses.
_DEPRECATED = {
    "CacheError": "WrongTypeError",  # raised only as CacheKeyTypeError
    "CacheKeyTypeError": "WrongTypeError",
    "HistoryKeyError": "WrongTypeError",
    "LimiterKeyError": "WrongTypeError",
    "QueueKeyError": "WrongTypeError",
    "SeriesKeyError": "WrongTypeError",
}


def __getattr__(name: str) -> object:
    new = _DEPRECATED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"labkit.errors.{name} is deprecated: catch labkit.errors.{new} (it has "
        "key, found and expected)",
        DeprecationWarning,
        stacklevel=2,
    )
    return globals()[new]


class LabkitError(Exception):
    """Base class for every error labkit raises on its own account.

    Errors that come from Redis itself (``redis.exceptions.*``) are not wrapped
    unless labkit can add something useful, in which case the original is kept
    as ``__cause__``.

    Every labkit error survives pickling with its context attributes, so an
    error raised in a worker process reaches the parent intact (the default
    would call ``cls(*args)`` without the keyword-only context, fail, and
    leave a ``multiprocessing`` parent waiting forever).
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[LabkitError], args: tuple[object, ...], state: dict[str, object]
) -> LabkitError:
    """Unpickle a labkit error without calling its ``__init__``."""
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class WrongTypeError(LabkitError):
    """A key the library owns holds another Redis type, or a value it did not write.

    Another program uses the name (or a stale value is left there). Every
    pattern checks before it writes, so nothing was written or run: pick
    another prefix or name, or delete the key if it is stale.

    One class for every pattern (cache, rate limiter, queue, fan-out,
    publisher history, time series...); the message names the pattern.

    Attributes:
        key: The Redis key.
        found: What is there: a Redis type (``"string"``, ``"hash"``...) or a
            short description of a record the pattern cannot read.
        expected: What the pattern keeps there (``"stream"``, ``"zset"``...).
    """

    def __init__(self, message: str, *, key: str, found: str, expected: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found
        self.expected = expected


class ServerVersionError(LabkitError):
    """The server is older than labkit needs (Redis or Valkey 7.0).

    Attributes:
        url: The server's URL, password masked ("" if not known).
        version: What it reported, e.g. ``"redis 6.2.14"``.
    """

    def __init__(self, message: str, *, url: str, version: str) -> None:
        super().__init__(message)
        self.url = url
        self.version = version


# --- labkit.core and labkit.pubsub -------------------------------------------


class ListenerError(LabkitError):
    """A pub/sub listener could not subscribe, answer or stop in time.

    Attributes:
        name: The listener's name.
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class MalformedMessageError(LabkitError):
    """A pub/sub message could not be parsed (raised by a listener's callback).

    Attributes:
        channel: Where it arrived.
        data: What it carried (possibly truncated).
    """

    def __init__(self, message: str, *, channel: str, data: object) -> None:
        super().__init__(message)
        self.channel = channel
        self.data = data


# --- labkit.locks ------------------------------------------------------------


class LockError(LabkitError):
    """A lock could not be used as asked (wrong-type key, no quorum of servers).

    Attributes:
        name: The lock's name (the resource it protects).
        key: The Redis key of the lock.
    """

    def __init__(self, message: str, *, name: str, key: str) -> None:
        super().__init__(message)
        self.name = name
        self.key = key


class LockNotOwnedError(LockError):
    """Release or extend of a lease the caller no longer holds.

    The lease expired (and another holder may have taken the lock since), or it
    was never held. Nothing was deleted or extended: the compare in the script
    protects whoever holds the lock now.

    Attributes:
        token: The caller's token, which the lock key no longer holds.
    """

    def __init__(self, message: str, *, name: str, key: str, token: str) -> None:
        super().__init__(message, name=name, key=key)
        self.token = token


class LockTimeoutError(LockError):
    """A blocking acquire (``with lock:``) did not get the lock in time.

    Attributes:
        timeout: The seconds waited.
    """

    def __init__(self, message: str, *, name: str, key: str, timeout: float) -> None:
        super().__init__(message, name=name, key=key)
        self.timeout = timeout


# --- labkit.cache ------------------------------------------------------------


class TrackingError(LabkitError):
    """Client-side caching could not arm ``CLIENT TRACKING`` on its connection.

    Attributes:
        server: ``host:port`` of the server.
        reason: What the server answered, or why no answer came.
    """

    def __init__(self, message: str, *, server: str, reason: str) -> None:
        super().__init__(message)
        self.server = server
        self.reason = reason


# --- labkit.queues -----------------------------------------------------------


class QueueFullError(LabkitError):
    """An enqueue was refused because the queue already holds its maximum
    (backpressure); nothing was written.

    Attributes:
        queue: The queue's name.
        length: Jobs it held (waiting, running and delayed).
        max_length: Its bound.
    """

    def __init__(
        self, message: str, *, queue: str, length: int, max_length: int
    ) -> None:
        super().__init__(message)
        self.queue = queue
        self.length = length
        self.max_length = max_length


class UnknownFanOutError(LabkitError):
    """A part was finished for a fanned-out job that has no completion record
    (never created, or expired); nothing was written.

    Attributes:
        job_id: The fanned-out job.
        key: Its completion record's key.
    """

    def __init__(self, message: str, *, job_id: str, key: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.key = key


class WorkerError(LabkitError):
    """A queue worker stopped on an error that is not a job's failure: its
    server stayed unreachable, or a worker thread raised.

    Attributes:
        worker: The worker's consumer name.
        queue: The queue's name.
    """

    def __init__(self, message: str, *, worker: str, queue: str) -> None:
        super().__init__(message)
        self.worker = worker
        self.queue = queue


# --- labkit.flags ------------------------------------------------------------


class FlagStoreError(LabkitError):
    """A flag set could not be loaded or changed (wrong-type keys, no first load).

    Attributes:
        namespace: The flag set's namespace.
        key: The Redis key involved.
    """

    def __init__(self, message: str, *, namespace: str, key: str) -> None:
        super().__init__(message)
        self.namespace = namespace
        self.key = key


# --- labkit.sharding ---------------------------------------------------------


class CrossSlotError(LabkitError):
    """Keys meant for one multi-key command map to several cluster slots.

    Raised by :func:`labkit.sharding.same_slot` before anything is sent (a
    cluster node would answer ``CROSSSLOT``).

    Attributes:
        keys: The keys, grouped by slot.
        slots: The distinct slots, sorted.
    """

    def __init__(self, message: str, *, keys: list[object], slots: list[int]) -> None:
        super().__init__(message)
        self.keys = keys
        self.slots = slots


class ShardUnavailableError(LabkitError):
    """One server of a :class:`labkit.sharding.ShardedClient` did not answer.

    The connection was refused or reset, or the client's ``socket_timeout``
    passed (a frozen or partitioned server). The other servers may be fine.

    Attributes:
        node: The router's name for the server.
        key: The key whose command failed ("" for a command over many keys).
        command: The command, e.g. ``"GET"``.
    """

    def __init__(self, message: str, *, node: str, key: str, command: str) -> None:
        super().__init__(message)
        self.node = node
        self.key = key
        self.command = command


class MoveError(LabkitError):
    """:func:`labkit.sharding.move_keys` stopped part way.

    Each ``MIGRATE`` is atomic per key, so every key is on its old or its new
    server, never on both or neither; run the move again to finish it.

    Attributes:
        source: Name of the server keys were moving from.
        target: Name of the server they were moving to.
        moved: Keys moved before the failure.
    """

    def __init__(self, message: str, *, source: str, target: str, moved: int) -> None:
        super().__init__(message)
        self.source = source
        self.target = target
        self.moved = moved
