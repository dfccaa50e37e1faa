"""The lab's exceptions: one base class, a few subclasses that carry context."""

from __future__ import annotations

__all__ = [
    "LabkitError",
    "ProxyError",
    "ServerBinaryNotFoundError",
    "ServerStartError",
    "ServerUnreachableError",
]


class LabkitError(Exception):
    """Base class for every error labkit raises on its own account.

    Errors that come from Redis itself (``redis.exceptions.*``) are not wrapped
    unless labkit can add something useful, in which case the original is kept
    as ``__cause__``.
    """


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
