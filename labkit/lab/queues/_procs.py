"""Lab: worker processes: real ``python -m labkit.lab.queues worker`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import TracebackType

from labkit.server import spawn

__all__ = ["WorkerProcesses"]


class WorkerProcesses:
    """``n`` worker processes on one queue, each with its own connection.

    Args:
        url: Server URL; passed to the children in ``REDIS_URL`` (not on the
            command line, where ``ps`` would show the password).
        name: Queue name.
        n: Number of processes.
        handler: ``module:function`` of the handler, importable by the child.
        options: Extra command-line options, e.g. ``["--visibility", "1"]``
            (see ``python -m labkit.lab.queues worker --help``).

    A context manager: leaving it stops every worker (SIGTERM: finish the job
    in hand, then exit), and on Linux a worker dies with the process that
    started it. :meth:`kill` SIGKILLs one worker, as in a crash.
    """

    def __init__(
        self,
        url: str,
        name: str,
        n: int = 1,
        *,
        handler: str = "labkit.lab.queues.demo:record",
        options: list[str] | None = None,
    ) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r}: must be an int >= 1")
        env = {**os.environ, "REDIS_URL": url}
        self.names = [f"proc-{i}" for i in range(n)]
        self.procs = [
            spawn(
                [
                    sys.executable,
                    "-m",
                    "labkit.lab.queues",
                    "worker",
                    "--name",
                    name,
                    "--handler",
                    handler,
                    "--consumer",
                    consumer,
                    *(options or []),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
            )
            for consumer in self.names
        ]

    def kill(self, i: int) -> None:
        """SIGKILL worker ``i`` (no cleanup, no ack: a crash) and reap it."""
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def wait(self, timeout: float = 60.0) -> list[int]:
        """Wait for every worker to exit (``--burst`` workers do once drained)."""
        return [p.wait(timeout=timeout) for p in self.procs]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every live worker, then SIGKILL those still up after ``timeout``."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> WorkerProcesses:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
