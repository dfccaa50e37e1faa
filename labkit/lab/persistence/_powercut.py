"""Power loss, measured: an LD_PRELOAD shim that records what each fsync made durable.

A process kill leaves the kernel's page cache intact, so it cannot show what a
power cut would lose. This shim, compiled at run time with the machine's C
compiler and preloaded into a server, wraps ``fsync``/``fdatasync``: after each
successful call it appends the file's identity (device, inode) and the length
it had when the call began to ``powercut.log`` in the server's data dir. A
*power cut* (:func:`power_cut`) is then a SIGKILL followed by truncating every
data file to the length its inode last had at an fsync (to nothing if it was
never fsynced): what a disk is sure to hold after the power comes back. The
shim can also make every fsync wait (``powercut.delay``): a slow or stalled
disk, on demand.

What the model leaves out: a real kernel may have written back some unsynced
pages on its own (Linux does so for dirty pages older than
``vm.dirty_expire_centisecs``, 30 s by default), so the cut is the worst case
that the fsyncs allow; directory entries are kept (the server fsyncs its data
dir after each rename); a file is followed by inode, so renames keep their
record and deletions (``unlink``, also wrapped) drop it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from labkit.core.args import check_seconds
from labkit.lab.errors import PowerCutUnavailableError
from labkit.lab.persistence._shim_source import SHIM_SOURCE
from labkit.server import Server, find_server_binary

__all__ = [
    "SHIM_SOURCE",
    "CutFile",
    "PowerCutShim",
    "SyncRecord",
    "fsync_counts",
    "fsync_log",
    "power_cut",
    "set_fsync_delay",
    "shim_unavailable_reason",
]

LOG_NAME, DELAY_NAME = "powercut.log", "powercut.delay"


def shim_unavailable_reason(binary: str | None = None) -> str:
    """Why the shim cannot run here, or "" if it should.

    It needs Linux (``LD_PRELOAD`` and ``/proc/self/fd``), a C compiler
    (``cc``, or ``CC``), and a dynamically linked server binary (a static one
    ignores ``LD_PRELOAD``).
    """
    if sys.platform != "linux":
        return f"the power-cut shim needs Linux (LD_PRELOAD), not {platform.system()}"
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return f"no C compiler found ({cc!r} is not on PATH)"
    try:
        binary = binary or find_server_binary()
    except Exception as exc:  # no binary at all: say so, as the reason
        return f"no server binary: {exc}"
    try:
        with open(binary, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        return f"cannot read the server binary {binary}: {exc}"
    if not head.startswith(b"\x7fELF"):
        return f"{binary} is not an ELF binary"
    if b"ld-linux" not in head and b"ld-musl" not in head:
        return f"{binary} is statically linked: LD_PRELOAD cannot reach its fsync"
    return ""


class PowerCutShim:
    """The compiled shim and a wrapper that starts a server with it preloaded.

    Args:
        binary: The server binary (default: :func:`labkit.server.find_server_binary`).

    :meth:`build` compiles :data:`SHIM_SOURCE` into a fresh temporary
    directory, with a two-line ``sh`` wrapper that sets ``LD_PRELOAD`` and
    ``exec``\\s the real binary; :meth:`server` makes a
    :class:`labkit.server.Server` that runs through it. :meth:`close` (or the
    ``with`` block's end) removes the directory. Servers keep the shim's files
    (``powercut.log``, ``powercut.delay``) in their own data dirs.

    Raises:
        PowerCutUnavailableError: From :meth:`build`, with the reason, where
            the shim cannot be built or cannot work.
    """

    def __init__(self, binary: str | None = None) -> None:
        if binary is not None and not isinstance(binary, str):
            raise TypeError(f"binary={binary!r}: must be a path (str) or None")
        self.binary = binary
        self.dir: Path | None = None

    @property
    def wrapper(self) -> str:
        """The executable to pass as ``Server(binary=...)``."""
        if self.dir is None:
            raise RuntimeError("call build() first (or use `with PowerCutShim()`)")
        return str(self.dir / "valkey-server-with-shim")

    def build(self) -> Self:
        """Compile the shim and write the wrapper (a few hundred ms)."""
        if self.dir is not None:
            return self
        binary = self.binary or ""
        reason = shim_unavailable_reason(self.binary)
        if reason:
            raise PowerCutUnavailableError(
                f"the power-cut shim cannot run here: {reason}",
                reason=reason,
                binary=binary,
            )
        binary = self.binary or find_server_binary()
        folder = Path(tempfile.mkdtemp(prefix="labkit-shim-"))
        try:
            (folder / "powercut.c").write_text(SHIM_SOURCE)
            cc = os.environ.get("CC", "cc")
            argv = [cc, "-shared", "-fPIC", "-O2", "-o", "powercut.so", "powercut.c"]
            done = subprocess.run(
                [*argv, "-ldl"], cwd=folder, capture_output=True, text=True, timeout=60
            )
            if done.returncode != 0:
                raise PowerCutUnavailableError(
                    f"the power-cut shim did not compile ({cc}):\n"
                    f"{done.stderr[-1500:]}",
                    reason="compilation failed",
                    binary=binary,
                )
            wrapper = folder / "valkey-server-with-shim"
            wrapper.write_text(
                "#!/bin/sh\n"
                f"LD_PRELOAD='{folder / 'powercut.so'}' exec '{binary}' \"$@\"\n"
            )
            wrapper.chmod(0o700)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.binary, self.dir = binary, folder
        return self

    def server(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> Server:
        """A (not yet started) :class:`Server` running with the shim preloaded."""
        self.build()
        return Server(config=config, binary=self.wrapper, **kwargs)

    def close(self) -> None:
        """Remove the compiled shim and its wrapper."""
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.build()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncRecord(NamedTuple):
    """One line of ``powercut.log``.

    Attributes:
        call: ``"fsync"``, ``"fdatasync"`` or ``"unlink"``.
        inode: ``(st_dev, st_ino)`` of the file.
        bytes: Its length when the fsync began (0 for ``unlink``).
        path: Its path at the time.
    """

    call: str
    inode: tuple[int, int]
    bytes: int
    path: str


def _require_shim_dir(server: Server) -> Path:
    if not isinstance(server, Server):
        raise TypeError(f"server={server!r}: must be a labkit Server")
    return Path(server.data_dir)


def fsync_log(server: Server) -> list[SyncRecord]:
    """Every record the shim wrote for ``server`` (empty without the shim)."""
    log = _require_shim_dir(server) / LOG_NAME
    if not log.exists():
        return []
    out = []
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[3].lstrip("-").isdigit():
            call, dev, ino, size, path = parts
            out.append(SyncRecord(call, (int(dev), int(ino)), int(size), path))
    return out


def fsync_counts(server: Server, *, since: int = 0) -> Counter[str]:
    """fsync/fdatasync calls per file name, from record number ``since`` on."""
    return Counter(
        Path(r.path).name for r in fsync_log(server)[since:] if r.call != "unlink"
    )


def set_fsync_delay(server: Server, seconds: float) -> None:
    """Make each fsync of ``server`` wait ``seconds`` first (0: no wait).

    Takes effect at once, also for fsyncs already waiting (they re-read it).
    """
    check_seconds("seconds", seconds, max=3600, min_open=False)
    folder = _require_shim_dir(server)
    target = folder / DELAY_NAME
    if seconds == 0:
        target.unlink(missing_ok=True)
        return
    tmp = folder / (DELAY_NAME + ".tmp")
    tmp.write_text(str(round(seconds * 1000)))
    tmp.replace(target)  # atomic: the shim never reads half a number


class CutFile(NamedTuple):
    """What a power cut did to one file of the data dir.

    Attributes:
        name: Path relative to the data dir.
        before: Its length at the cut.
        after: Its length afterwards: what its last fsync covered (0 if it
            was never fsynced).
    """

    name: str
    before: int
    after: int

    @property
    def dropped(self) -> int:
        """Bytes the cut took away."""
        return self.before - self.after


_DATA_SUFFIXES = (".rdb", ".aof", ".manifest")


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (a server's BGSAVE/rewrite child)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if fields and len(fields) > 1 and fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until ``pid`` shows state T (stopped) in /proc."""
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{pid}/stat")
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return  # gone
        if state in ("T", "t"):
            return
        time.sleep(0.0005)


def power_cut(server: Server) -> list[CutFile]:
    """SIGKILL ``server`` and its children, then keep of each data file only
    what was fsynced.

    Data files are ``*.rdb``, ``*.aof`` and the AOF manifest, in the data dir
    and ``appendonlydir/``. Each is truncated to the length recorded at its
    inode's last fsync, or to 0 if it has none (its name stays: the server
    fsyncs the directory after creating its files). The fsync delay is
    cleared, so that the restart is not stalled. Restart with
    ``server.restart()``.

    A snapshot or rewrite child is killed first: power goes for every
    process at once, and a child left running would go on writing (and
    renaming) files after the cut.
    """
    folder = _require_shim_dir(server)
    if server.pid is not None:
        # Freeze the server first: killed child by child while it ran, it
        # could see a child die and act on it (a failed rewrite ends, and the
        # next everysec fsync covers what the rewrite had held back: seen
        # once in CI as a cut that kept 400 of 400 writes).
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGSTOP)
            _wait_stopped(server.pid)
        for child in _children(server.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    server.kill()  # SIGKILL ends a stopped process too
    set_fsync_delay(server, 0)
    synced: dict[tuple[int, int], int] = {}
    for rec in fsync_log(server):
        if rec.call == "unlink":
            synced.pop(rec.inode, None)
        else:
            synced[rec.inode] = rec.bytes
    cuts = []
    for path in sorted([*folder.glob("*"), *folder.glob("appendonlydir/*")]):
        if not path.is_file() or not path.name.endswith(_DATA_SUFFIXES):
            continue
        st = path.stat()
        keep = min(synced.get((st.st_dev, st.st_ino), 0), st.st_size)
        with open(path, "r+b") as fh:
            fh.truncate(keep)
        cuts.append(CutFile(str(path.relative_to(folder)), st.st_size, keep))
    return cuts
