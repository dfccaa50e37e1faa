"""Data directories for embedded servers: private, marked with their owner, swept.

Every embedded server keeps its config (which holds its password), its log and
its data files in a directory. labkit makes that directory private (0700, the
config 0600) and removes it when the server is closed, at interpreter exit, and
after a crash: a directory labkit created carries an owner file naming the
process (pid and start time) that created it, and the next labkit process to
create a directory removes the ones whose owner has died. Only directories
with that marker, owned by the same user, are ever removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OWNER_FILE", "make_private_dir", "sweep_stale_dirs", "write_private"]

#: Marker file inside each directory labkit created.
OWNER_FILE = "labkit-owner"
_PREFIX = "labkit-"


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()[19]


def _me() -> str:
    return f"{os.getpid()} {_start_time(os.getpid()) or '?'}"


def _owner_alive(owner: str) -> bool:
    try:
        pid_text, started = owner.split()
        pid = int(pid_text)
    except ValueError:
        return True  # not ours to judge: keep it
    if started == "?":  # no /proc (macOS): fall back to "is the pid alive"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _start_time(pid) == started


def sweep_stale_dirs(root: str | None = None) -> list[Path]:
    """Remove labkit data dirs whose creating process has died; return them.

    Only directories named ``labkit-*`` directly under ``root`` (the system
    temp dir by default), owned by this user and holding labkit's owner file,
    are considered.
    """
    removed: list[Path] = []
    base = Path(root or tempfile.gettempdir())
    for path in base.glob(f"{_PREFIX}*"):
        marker = path / OWNER_FILE
        try:
            if path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
            owner = marker.read_text().strip()
        except OSError:
            continue
        if not _owner_alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_private_dir() -> Path:
    """A new 0700 temp dir marked as this process's (stale ones swept first)."""
    with contextlib.suppress(OSError):
        sweep_stale_dirs()
    path = Path(tempfile.mkdtemp(prefix=_PREFIX))
    write_private(path / OWNER_FILE, _me() + "\n")
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (0600), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # in case the file existed with wider permissions
    os.replace(tmp, path)
