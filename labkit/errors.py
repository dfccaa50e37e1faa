"""Library: labkit's exceptions: one base class, subclasses that carry context."""

from __future__ import annotations

__all__ = [
    "ExperimentTimeoutError",
    "LabkitError",
    "ListenerError",
    "MalformedMessageError",
    "PowerCutUnavailableError",
    "ProxyError",
    "SeriesKeyError",
    "ServerBinaryNotFoundError",
    "ServerStartError",
    "ServerUnreachableError",
    "ServerVersionError",
    "SessionExpiredError",
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
