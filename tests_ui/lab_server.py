"""A throwaway JupyterLab for the browser test, and the processes it leaves.

JupyterLab runs from the project's venv with every piece of state it would
write (settings, workspaces, runtime files, checkpoints, kernel spec) in a
temporary folder, and with autosave off: opening and running the notebooks
writes nothing into the checkout. It runs in its own process group and is
stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

KERNEL_NAME = "python3"

# JupyterLab user settings, by plugin. "windowingMode: none" keeps every cell in
# the DOM (no virtual scrolling), so the page can be inspected cell by cell.
SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "scrollPastEnd": False,
    },
    "@jupyterlab/docmanager-extension/plugin": {
        "autosave": False,
        "confirmClosingDocument": False,
    },
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


# Processes: only PIDs this run started (or that were re-parented to it) are
# ever signalled; (pid, start time) pairs guard against PID reuse.


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of ``pid``, or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), fields[19]


def alive(pid: int, start: str) -> bool:
    """Whether ``pid`` is still the process that started at ``start``, unreaped."""
    st = _stat(pid)
    return st is not None and st[2] == start and st[0] not in ("Z", "X")


def _process_table() -> tuple[dict[int, list[int]], dict[int, str]]:
    """({parent pid: [child pids]}, {pid: start time}) of every live process."""
    kids: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) and st[0] not in ("Z", "X"):
            kids.setdefault(st[1], []).append(int(entry))
            starts[int(entry)] = st[2]
    return kids, starts


def children(parent: int) -> dict[int, str]:
    """The live children of ``parent``, as {pid: start time}."""
    kids, starts = _process_table()
    return {pid: starts[pid] for pid in kids.get(parent, [])}


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``, as {pid: start time}."""
    kids, starts = _process_table()
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid`` (empty once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def end_processes(procs: dict[int, str], grace: float = 10.0) -> list[str]:
    """Wait up to ``grace`` seconds for ``procs`` to exit, then end them.

    Args:
        procs: {pid: start time} of processes this run started.
        grace: seconds they get to exit by themselves.

    Returns:
        The command lines of the processes that had to be signalled.
    """
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p, s) for p, s in procs.items()):
        time.sleep(0.2)
    ended: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [p for p, s in procs.items() if alive(p, s)]
        if not left:
            break
        for pid in left:
            if sig == signal.SIGTERM:
                ended.append(f"pid {pid}: {cmdline(pid)[:160]}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        time.sleep(2)
    reap(procs)
    return ended


def reap(pids: Iterable[int]) -> None:
    """Reap those of ``pids`` that are exited children of this process.

    Orphans are re-parented here (the run is a child subreaper); only PIDs the
    caller names are reaped, so a child that Popen or asyncio waits for is not.
    """
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _prctl(option: int, value: int) -> None:
    """Linux prctl(option, value), raising OSError on failure."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def become_subreaper() -> None:
    """Have orphans of this run's processes re-parented here, not to PID 1.

    A kernel's child that outlives the kernel (a server without PDEATHSIG, a
    worker process) then stays a descendant of the test run, where the test
    finds it and ends it.
    """
    pr_set_child_subreaper = 36
    _prctl(pr_set_child_subreaper, 1)


def _term_with_parent() -> None:
    """In the child before exec: SIGTERM when the test run dies (even SIGKILLed)."""
    pr_set_pdeathsig = 1
    _prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LabServer:
    """JupyterLab serving ``root`` from ``python``'s venv, with state in ``state``.

    Args:
        python: the venv's interpreter (``.venv/bin/python``, not resolved).
        root: the folder JupyterLab serves (the checkout).
        state: an empty temporary folder for everything JupyterLab writes.
        log_path: where the server's output goes.
    """

    def __init__(self, python: str, root: Path, state: Path, log_path: Path) -> None:
        self.python = python
        self.root = root
        self.state = state
        self.log_path = log_path
        self.token = secrets.token_hex(24)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _environment(self) -> dict[str, str]:
        """Write the kernel spec and settings; return the server's environment."""
        kernel_dir = self.state / "share" / "kernels" / KERNEL_NAME
        kernel_dir.mkdir(parents=True)
        spec = {
            "argv": [
                self.python,
                "-m",
                "ipykernel_launcher",
                "-f",
                "{connection_file}",
            ],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        (kernel_dir / "kernel.json").write_text(json.dumps(spec))
        for plugin, values in SETTINGS.items():
            path = self.state / "settings" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        for sub in (
            "workspaces",
            "runtime",
            "config",
            "data",
            "checkpoints",
            "ipython",
        ):
            (self.state / sub).mkdir(exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("JUPYTER_TOKEN", "JUPYTER_PREFER_ENV_PATH")
        }
        venv_bin = os.path.dirname(self.python)
        env.update(
            # JUPYTER_PATH is searched first: this "python3" is the venv's.
            JUPYTER_PATH=str(self.state / "share"),
            JUPYTER_DATA_DIR=str(self.state / "data"),
            JUPYTER_CONFIG_DIR=str(self.state / "config"),
            JUPYTER_RUNTIME_DIR=str(self.state / "runtime"),
            # The learner's IPython history stays free of test runs.
            IPYTHONDIR=str(self.state / "ipython"),
            # Kernels inherit this: no __pycache__ written into the checkout.
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONUNBUFFERED="1",
            # As if the venv were activated (a notebook's `!python` is the venv's).
            PATH=venv_bin + os.pathsep + env.get("PATH", ""),
            VIRTUAL_ENV=os.path.dirname(venv_bin),
        )
        return env

    def start(self, timeout: float) -> None:
        """Start the server and wait until its REST API answers."""
        env = self._environment()
        cmd = [
            self.python,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={self.state / 'settings'}",
            f"--LabApp.workspaces_dir={self.state / 'workspaces'}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--FileCheckpoints.root_dir={self.state / 'checkpoints'}",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")  # Jupyter refuses root without it
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_term_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"JupyterLab exited ({code}); see {self.log_path}")
            try:
                self.api("GET", "/api/status", timeout=5)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer in {timeout:.0f} s")

    def api(self, method: str, path: str, timeout: float = 30) -> Any:
        """Call the server's REST API; return the decoded JSON body (or None)."""
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def notebook_url(self, relpath: str) -> str:
        """The URL that opens ``relpath`` in a fresh workspace."""
        quoted = urllib.parse.quote(relpath)
        return f"{self.base_url}/lab/tree/{quoted}?reset&token={self.token}"

    def kernel_processes(self) -> dict[int, str]:
        """{pid: start time} of every process below the server (kernels and theirs)."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        return descendants(self.proc.pid)

    def kernel_pythons(self) -> set[str]:
        """The interpreters running the server's kernels right now."""
        return {
            cmdline(pid).split(" ")[0]
            for pid in self.kernel_processes()
            if "ipykernel_launcher" in cmdline(pid)
        }

    def shutdown_kernels(self) -> None:
        """Shut down every session (and so every kernel) through the REST API."""
        for session in self.api("GET", "/api/sessions") or []:
            self.api("DELETE", f"/api/sessions/{session['id']}", timeout=60)

    def stop(self) -> list[str]:
        """Stop the server's process group (SIGTERM, then SIGKILL after 20 s).

        Returns:
            The processes below the server (kernels run in sessions of their
            own) that were still running afterwards and had to be ended.
        """
        if self.proc is None:
            return []
        below = self.kernel_processes()
        group = self.proc.pid  # start_new_session: the server leads its group
        try:
            os.killpg(group, signal.SIGTERM)  # the server shuts its kernels down
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        self.proc.wait(timeout=20)
        return end_processes(below)
