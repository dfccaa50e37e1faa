"""Children that do not outlive labkit: the one spawn-with-death-signal helper."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["free_port", "spawn"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# PR_SET_PDEATHSIG: the kernel SIGKILLs the child when its parent dies, even
# when the parent itself was SIGKILLed (a killed Jupyter kernel). The signal
# fires when the *thread* that forked the child exits, so children started off
# the main thread are forked from one long-lived thread (created on first use).

_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labkit-spawner")


def _set_parent_death_signal() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` for a child that must not outlive this process.

    On Linux the child gets ``PR_SET_PDEATHSIG`` (SIGKILL): the kernel kills it
    when its parent dies, even if the parent was SIGKILLed. The signal fires
    when the *thread* that forked the child exits, so a call from any thread
    but the main one forks from labkit's long-lived spawner thread instead.
    Elsewhere (macOS) it is a plain ``Popen``: stop the child yourself.

    Args:
        argv: The command and its arguments.
        **popen_kwargs: Passed to ``subprocess.Popen`` (``env``, ``stdin``,
            ``stdout``, ``start_new_session``, ...); not ``preexec_fn``, which
            this function owns.

    Returns:
        The started process.

    Raises:
        TypeError: ``preexec_fn`` was passed.
    """
    if "preexec_fn" in popen_kwargs:
        raise TypeError("spawn() sets preexec_fn itself (the death signal)")
    preexec = _set_parent_death_signal if sys.platform == "linux" else None

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(argv), preexec_fn=preexec, **popen_kwargs)

    if threading.current_thread() is threading.main_thread():
        return popen()
    return _spawner.submit(popen).result()
