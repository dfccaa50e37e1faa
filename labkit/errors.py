"""Library: labkit's exceptions: one base class, subclasses that carry context."""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CacheKeyTypeError",
    "ClusterStateError",
    "ContentionError",
    "CrossSlotError",
    "ExperimentTimeoutError",
    "FlagPropagationError",
    "FlagStoreError",
    "GameStateError",
    "HistoryKeyError",
    "LabkitError",
    "LimiterKeyError",
    "ListenerError",
    "LockError",
    "LockNotOwnedError",
    "LockTimeoutError",
    "MalformedMessageError",
    "MoveError",
    "PowerCutUnavailableError",
    "ProxyError",
    "QueueFullError",
    "QueueKeyError",
    "SeriesKeyError",
    "ServerBinaryNotFoundError",
    "ServerStartError",
    "ServerUnreachableError",
    "ServerVersionError",
    "SessionExpiredError",
    "ShardUnavailableError",
    "ShortenerKeyError",
    "TrackingError",
    "UnknownFanOutError",
    "UnsafeServerError",
    "WireError",
    "WorkerError",
    "WorkerProcessError",
]


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


class ServerBinaryNotFoundError(LabkitError):
    """No ``valkey-server`` / ``redis-server`` binary could be found."""


class ServerStartError(LabkitError):
    """An embedded server process did not come up.

    Attributes:
        binary: Path of the server binary that was run.
        port: TCP port it was asked to listen on.
        log: The last lines of its log file (may be empty).
    """

    def __init__(self, message: str, *, binary: str, port: int, log: str) -> None:
        super().__init__(message)
        self.binary = binary
        self.port = port
        self.log = log


class ServerUnreachableError(LabkitError):
    """A server given by URL (argument or ``REDIS_URL``) did not answer.

    Attributes:
        url: The URL that was tried, with any password masked.
    """

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class UnsafeServerError(LabkitError):
    """A destructive command (FLUSHDB, CONFIG SET) was refused on a server that
    labkit did not start, in database 0, without the user's opt-in.

    Attributes:
        url: The server, password masked.
        keys: How many keys its database held.
    """

    def __init__(self, message: str, *, url: str, keys: int) -> None:
        super().__init__(message)
        self.url = url
        self.keys = keys


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


class ProxyError(LabkitError):
    """A fault-injecting proxy (``labkit.lab.proxy``) could not start or stop.

    Attributes:
        upstream: The ``host:port`` the proxy forwards to.
        port: The port it listens (or tried to listen) on, if known.
    """

    def __init__(self, message: str, *, upstream: str, port: int | None) -> None:
        super().__init__(message)
        self.upstream = upstream
        self.port = port


class SessionExpiredError(LabkitError):
    """A chat session (:mod:`labkit.lab.chat`) is unknown or its hour is over.

    Attributes:
        token: The token that was given.
    """

    def __init__(self, token: str) -> None:
        super().__init__(
            f"session {token!r} does not exist or has expired; start a new one "
            "with ChatService.new_session()"
        )
        self.token = token


# --- labkit.locks -------------------------------------------------------------


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


# --- basics (labkit.lab.basics) ---------------------------------------------


class WireError(LabkitError):
    """A raw RESP socket (:class:`labkit.lab.basics.Wire`) failed.

    Attributes:
        address: The ``host:port`` it talks to.
    """

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


# --- labkit.cache --------------------------------------------------------------


class CacheError(LabkitError):
    """A cache could not read or store an entry.

    Attributes:
        key: The Redis key involved.
    """

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class CacheKeyTypeError(CacheError):
    """A key the cache owns holds another Redis type (someone else's data).

    Nothing was written: the cache checks the type before it stores.

    Attributes:
        key: The Redis key.
        expected: The type the cache uses there (``"string"``, ``"hash"``...).
        found: The type the key holds.
    """

    def __init__(self, key: str, *, expected: str, found: str) -> None:
        super().__init__(
            f"key {key!r} holds a {found}, but the cache keeps a {expected} there: "
            "another program uses this name. Nothing was written; choose another "
            "namespace, or delete the key if it is stale.",
            key=key,
        )
        self.expected = expected
        self.found = found


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


# --- labkit.queues, labkit.lab.queues and labkit.lab.chat ----------------------


class QueueKeyError(LabkitError):
    """A key of a queue, fan-out or chat holds another type of value (or a
    record labkit cannot read), so nothing was done and nothing written.

    Attributes:
        key: The Redis key.
        found: What is there (a Redis type such as ``"string"``, or a short
            description of the bad record).
        expected: What labkit keeps there.
    """

    def __init__(self, message: str, *, key: str, found: str, expected: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found
        self.expected = expected


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


class WorkerProcessError(LabkitError):
    """A worker process (``python -m labkit.lab.queues worker``) exited with an
    error or did not start in time.

    Attributes:
        worker: Its consumer name.
        returncode: Its exit status (None if it was still running).
        output: The last lines it wrote to stderr.
    """

    def __init__(
        self, message: str, *, worker: str, returncode: int | None, output: str
    ) -> None:
        super().__init__(message)
        self.worker = worker
        self.returncode = returncode
        self.output = output


# --- labkit.pubsub and labkit.lab.games ----------------------------------------


class HistoryKeyError(LabkitError):
    """A channel's history stream key holds another type; nothing was published.

    Attributes:
        key: The Redis key (``<prefix>:{<channel>}``).
        found: The Redis type found there (``"string"``, ``"hash"``...).
        expected: What the publisher keeps there (``"stream"``).
    """

    def __init__(self, message: str, *, key: str, found: str, expected: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found
        self.expected = expected


class GameStateError(LabkitError):
    """A stored tic-tac-toe game (:mod:`labkit.lab.games`) is unusable: one of
    its keys holds another type, or its fields are corrupt. Nothing was written.

    Attributes:
        key: The Redis key.
        found: What was found (a Redis type, or the corrupt value).
        expected: What the game keeps there.
    """

    def __init__(self, message: str, *, key: str, found: str, expected: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found
        self.expected = expected


# --- labkit.timeseries and labkit.lab.persistence ---------------------------


class SeriesKeyError(LabkitError):
    """A series key holds something a :class:`labkit.timeseries.SeriesStore`
    did not write (another Redis type, or members that are not its points);
    nothing was written.

    Attributes:
        key: The Redis key (``<prefix>:<series>``).
        found: What is there (a Redis type such as ``"string"``, or
            ``"zset of foreign members"``).
    """

    def __init__(self, message: str, *, key: str, found: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found


class PowerCutUnavailableError(LabkitError):
    """The power-cut shim (``labkit.lab.persistence.PowerCutShim``) cannot run here.

    Attributes:
        reason: Why, in words (not Linux, no C compiler, a static binary...).
        binary: The server binary it was meant for ("" if none was found).
    """

    def __init__(self, message: str, *, reason: str, binary: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.binary = binary


class ExperimentTimeoutError(LabkitError):
    """A durability or failover experiment (``labkit.lab.persistence``) waited
    for a server state (a replica in sync, a promotion, a rewrite finished...)
    that did not come within its timeout.

    Attributes:
        server: ``host:port`` of the server (or Sentinel) it was waiting on.
        waited: What it waited for, in words.
    """

    def __init__(self, message: str, *, server: str, waited: str) -> None:
        super().__init__(message)
        self.server = server
        self.waited = waited


# --- labkit.ratelimit and labkit.flags ----------------------------------------


class LimiterKeyError(LabkitError):
    """A limiter's key already holds a value of another type (or another
    algorithm's state), so no decision can be made; nothing was written.

    Attributes:
        key: The Redis key (``<prefix>:<request key>``).
        found: The Redis type found there (``"string"``, ``"hash"``...).
        expected: What the limiter keeps there.
    """

    def __init__(self, message: str, *, key: str, found: str, expected: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found
        self.expected = expected


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


class FlagPropagationError(FlagStoreError):
    """A flag change did not reach another store's local copy in time.

    Attributes:
        flag: The flag that was changed.
        timeout: Seconds waited.
    """

    def __init__(
        self, message: str, *, namespace: str, key: str, flag: str, timeout: float
    ) -> None:
        super().__init__(message, namespace=namespace, key=key)
        self.flag = flag
        self.timeout = timeout


class ContentionError(LabkitError):
    """A contention trial (``labkit.lab.ratelimit.Contention``) failed or ran out
    of time; its worker processes were released.

    Attributes:
        url: The server the workers used (password masked if it had one).
        algorithm: The limiter under test.
    """

    def __init__(self, message: str, *, url: str, algorithm: str) -> None:
        super().__init__(message)
        self.url = url
        self.algorithm = algorithm


# --- labkit.sharding and labkit.lab.sharding -----------------------------------


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


class ShortenerKeyError(LabkitError):
    """A URL shortener's key holds a value of another type; nothing was written.

    Attributes:
        key: The Redis key.
        found: The Redis type found there.
        expected: What the shortener keeps there.
    """

    def __init__(self, message: str, *, key: str, found: str, expected: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found
        self.expected = expected


class ClusterStateError(LabkitError):
    """A cluster did not reach a state in time (formed, joined, migrated).

    Attributes:
        what: The state waited for, e.g. ``"cluster_state:ok"``.
        nodes: ``host:port`` of the nodes involved.
        timeout: Seconds waited.
    """

    def __init__(
        self, message: str, *, what: str, nodes: list[str], timeout: float
    ) -> None:
        super().__init__(message)
        self.what = what
        self.nodes = nodes
        self.timeout = timeout
