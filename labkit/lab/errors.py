"""Lab: errors raised only by the lab's experiments, harnesses and tutorial systems.

They derive from :class:`labkit.errors.LabkitError` (``FlagPropagationError``
from :class:`labkit.errors.FlagStoreError`), take ``(message, *, context...)``
and pickle with their context like every labkit error. A stored value of the
wrong type is the library's :class:`labkit.errors.WrongTypeError`, here too.
"""

from __future__ import annotations

from labkit.errors import FlagStoreError, LabkitError

__all__ = [
    "ContentionError",
    "ExperimentTimeoutError",
    "FlagPropagationError",
    "PowerCutUnavailableError",
    "ProxyError",
    "SessionExpiredError",
    "WireError",
    "WorkerProcessError",
]


class WireError(LabkitError):
    """A raw RESP socket (:class:`labkit.lab.basics.Wire`) failed.

    Attributes:
        address: The ``host:port`` it talks to.
    """

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


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

    def __init__(self, message: str, *, token: str) -> None:
        super().__init__(message)
        self.token = token


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
