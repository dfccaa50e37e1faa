"""Lab: worker processes: real ``python -m labkit.lab.queues worker`` processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from labkit.core.args import DAY, check_count, check_name, check_seconds
from labkit.lab.errors import WorkerProcessError
from labkit.queues import GROUP, JobQueue
from labkit.server import spawn

__all__ = ["WorkerProcesses"]


class WorkerProcesses:
    """``n`` worker processes on one queue, each with its own connection.

    Args:
        url: Server URL; passed to the children in ``REDIS_URL`` (not on the
            command line, where ``ps`` would show the password).
        name: Queue name.
        n: Number of processes (1 to 64).
        handler: ``"module:function"`` of the handler. A worker process
            imports it, so it must live in a module, not in a notebook cell:
            write it to a ``.py`` file and pass that file's directory as
            ``path``.
        path: A directory put at the front of the children's ``PYTHONPATH``
            (where your handler's module is), or None.
        options: Extra command-line options, e.g. ``["--visibility", "1"]``
            (see ``python -m labkit.lab.queues worker --help``).

    A context manager: leaving it stops every worker (SIGTERM: finish the job
    in hand, then exit), and on Linux a worker dies with the process that
    started it. :meth:`kill` SIGKILLs one worker, as in a crash;
    :meth:`pause` freezes one (SIGSTOP) and :meth:`resume` thaws it. Each child's
    stderr goes to a file of its own, quoted in the
    :class:`~labkit.lab.errors.WorkerProcessError` raised when a child fails.
    """

    def __init__(
        self,
        url: str,
        name: str,
        n: int = 1,
        *,
        handler: str = "labkit.lab.queues.demo:record",
        path: str | os.PathLike[str] | None = None,
        options: list[str] | None = None,
    ) -> None:
        check_name("url", url)
        check_name("name", name)
        check_count("n", n, max=64)
        module, sep, attr = check_name("handler", handler).partition(":")
        if not (module and sep and attr):
            raise ValueError(f"handler={handler!r}: must be 'module:function'")
        env = {**os.environ, "REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
        if path is not None:
            if not Path(path).is_dir():
                raise ValueError(f"path={path!r}: must be an existing directory")
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (os.fspath(path), env.get("PYTHONPATH", "")) if p
            )
        self.names = [f"proc-{i}" for i in range(n)]
        self.killed: set[int] = set()
        self.paused: set[int] = set()
        self._logs = Path(tempfile.mkdtemp(prefix="labkit-workers-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for consumer in self.names:
                with open(self._logs / f"{consumer}.err", "wb") as err:
                    argv = [sys.executable, "-m", "labkit.lab.queues", "worker"]
                    argv += ["--name", name, "--handler", handler]
                    argv += ["--consumer", consumer, *(options or [])]
                    self.procs.append(
                        spawn(argv, env=env, stdin=subprocess.DEVNULL, stderr=err)
                    )
        except BaseException:
            self.stop()
            raise

    def output(self, i: int, lines: int = 15) -> str:
        """The last ``lines`` lines worker ``i`` wrote to stderr."""
        path = self._logs / f"{self.names[i]}.err"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _error(
        self, i: int, what: str, code: int | None = None, *, log: bool = False
    ) -> WorkerProcessError:
        """The error for worker ``i`` (``log``: its output's tail in the message)."""
        tail = f":\n{self.output(i)}" if log else ""
        return WorkerProcessError(
            f"worker process {self.names[i]!r} {what}{tail}",
            worker=self.names[i],
            returncode=code,
            output=self.output(i),
        )

    def check(self) -> None:
        """Raise :class:`WorkerProcessError` if a worker exited on an error.

        Workers stopped by :meth:`kill` do not count.
        """
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code not in (None, 0) and i not in self.killed:
                raise self._error(i, f"exited with status {code}", code, log=True)

    def wait_ready(self, queue: JobQueue, timeout: float = 30.0) -> None:
        """Wait until every worker has joined ``queue``'s consumer group.

        Raises:
            WorkerProcessError: A worker exited (its stderr is quoted), or not
                all joined within ``timeout`` seconds.
        """
        check_seconds("timeout", timeout, max=DAY)
        deadline = time.monotonic() + timeout
        queue.ensure_group()  # the group the workers join (JobQueue() does no I/O)
        while True:
            self.check()
            got: Any = queue.client.xinfo_consumers(queue.stream, GROUP)
            joined = {c["name"] for c in got}
            missing = [n for n in self.names if n not in joined]
            if not missing:
                return
            if time.monotonic() >= deadline:
                i = self.names.index(missing[0])
                raise WorkerProcessError(
                    f"worker processes {missing} did not join queue "
                    f"{queue.name!r} within {timeout:g} s:\n{self.output(i)}",
                    worker=missing[0],
                    returncode=None,
                    output=self.output(i),
                )
            time.sleep(0.02)

    def kill(self, i: int) -> None:
        """SIGKILL worker ``i`` (no cleanup, no ack: a crash) and reap it."""
        self.killed.add(i)
        self.paused.discard(i)
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def pause(self, i: int, timeout: float = 10.0) -> None:
        """SIGSTOP worker ``i`` and wait until it is stopped.

        From then on it sends nothing, so what it holds (its pending entries)
        no longer changes; :meth:`resume` lets it go on, :meth:`kill` ends it.

        Raises:
            WorkerProcessError: It exited, or was not stopped within
                ``timeout`` seconds.
        """
        check_seconds("timeout", timeout, max=DAY)
        p, deadline = self.procs[i], time.monotonic() + timeout
        self.paused.add(i)
        p.send_signal(signal.SIGSTOP)
        # WNOWAIT: look without consuming; Popen never asks about stops.
        flags = os.WSTOPPED | os.WNOHANG | os.WNOWAIT
        while p.poll() is None and os.waitid(os.P_PID, p.pid, flags) is None:
            if time.monotonic() >= deadline:
                raise self._error(i, f"not stopped within {timeout:g} s")
            time.sleep(0.0005)
        self.check()  # it exited on an error: say so

    def resume(self, i: int) -> None:
        """SIGCONT worker ``i`` after :meth:`pause`."""
        self.paused.discard(i)
        self.procs[i].send_signal(signal.SIGCONT)

    def wait(self, timeout: float = 60.0) -> list[int]:
        """Wait for every worker to exit (``--burst`` workers do once drained).

        Raises:
            WorkerProcessError: A worker exited on an error, or was still
                running after ``timeout`` seconds.
        """
        check_seconds("timeout", timeout, max=DAY)
        deadline = time.monotonic() + timeout
        for i, p in enumerate(self.procs):
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise self._error(i, f"still running after {timeout:g} s") from exc
        self.check()
        return [p.returncode for p in self.procs]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every live worker, then SIGKILL those still up after ``timeout``."""
        for i, p in enumerate(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                if i in self.paused:  # a stopped process acts on it once thawed
                    self.resume(i)
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self._logs, ignore_errors=True)

    def __enter__(self) -> WorkerProcesses:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
