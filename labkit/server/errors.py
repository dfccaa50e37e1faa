"""Server: errors of the server manager (:mod:`labkit.server`).

Raised when an embedded Valkey/Redis server, cluster or Sentinel cannot be
found, started, reached or used safely. They derive from
:class:`labkit.errors.LabkitError`, so ``except LabkitError`` still catches them,
and they pickle with their context like every labkit error.
"""

from __future__ import annotations

from labkit.errors import LabkitError

__all__ = [
    "ClusterStateError",
    "ServerBinaryNotFoundError",
    "ServerStartError",
    "ServerUnreachableError",
    "UnsafeServerError",
]


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
