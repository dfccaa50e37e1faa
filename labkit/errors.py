"""Library: labkit's exceptions: one base class, subclasses that carry context."""

from __future__ import annotations

__all__ = [
    "ClusterStateError",
    "CrossSlotError",
    "LabkitError",
    "ListenerError",
    "MalformedMessageError",
    "MoveError",
    "ProxyError",
    "ServerBinaryNotFoundError",
    "ServerStartError",
    "ServerUnreachableError",
    "ServerVersionError",
    "SessionExpiredError",
    "ShardUnavailableError",
    "ShortenerKeyError",
    "UnsafeServerError",
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
