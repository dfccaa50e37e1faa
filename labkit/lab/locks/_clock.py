"""Lab: a server whose wall clock we can step, through libfaketime.

Redlock assumes that the servers' clocks advance at about the same rate (its
drift allowance is 1% of the TTL). A wall clock can also *jump*: NTP stepping
a clock it found far off, an administrator, a VM resumed after a pause. Valkey
expires keys by its wall clock (``mstime()``, from ``gettimeofday``, in
``src/server.c``), so a jump forward ends every lease on that server at once.

:class:`FakeClock` makes a ``valkey-server`` wrapper that preloads Debian's
libfaketime (``apt-get install libfaketime``) and reads the offset from a file
on every call (``FAKETIME_NO_CACHE``): :meth:`FakeClock.jump` steps the clock
of a running server. The monotonic clock is left alone
(``FAKETIME_DONT_FAKE_MONOTONIC``), as a real wall-clock step leaves it.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import stat
import tempfile
from pathlib import Path

from labkit.core.args import check_number
from labkit.server import find_server_binary

__all__ = ["FakeClock", "libfaketime"]

DAY = 86_400.0  # the largest step or offset: plenty for a lease

_SEARCH = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def libfaketime() -> str | None:
    """The path of libfaketime's shared library, or None if not installed."""
    if platform.system() != "Linux":
        return None
    for pattern in _SEARCH:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


class FakeClock:
    """A server binary whose wall clock can be stepped while it runs.

    Args:
        offset: The clock's starting offset from the real one, in seconds.

    Attributes:
        binary: The wrapper to give ``Server(binary=...)``; None if
            :attr:`missing` says why it cannot be made.
        missing: Why there is no fake clock here (no libfaketime, not Linux),
            or ``""``.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self.missing = ""
        self.binary: str | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="labkit-faketime-"))
        self.offset_file = self._dir / "faketime.rc"
        lib = libfaketime()
        if lib is None:
            self.missing = (
                "libfaketime is not installed (Debian: apt-get install libfaketime)"
                if platform.system() == "Linux"
                else f"libfaketime's LD_PRELOAD needs Linux, not {platform.system()}"
            )
            return
        self.set(offset)
        wrapper = self._dir / "valkey-server-faketime"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"export LD_PRELOAD={lib}\n"
            f"export FAKETIME_TIMESTAMP_FILE={self.offset_file}\n"
            "export FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1\n"
            f'exec {find_server_binary()} "$@"\n'
        )
        wrapper.chmod(stat.S_IRWXU)
        self.binary = str(wrapper)

    @property
    def script(self) -> str:
        """The wrapper's text (what ``Server`` runs instead of the binary), with
        this machine's folders shortened to ``<tmp>`` and ``<valkey-server>``."""
        if not self.binary:
            return ""
        text = Path(self.binary).read_text()
        text = text.replace(find_server_binary(), "<valkey-server>")
        return text.replace(str(self._dir), "<tmp>")

    def set(self, offset: float) -> None:
        """Set the clock to the real time plus ``offset`` seconds, now."""
        offset = check_number("offset", offset, min=-DAY, max=DAY, unit="of seconds")
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(f"{offset:+.3f}\n")
        os.replace(tmp, self.offset_file)  # never a half-written offset

    def jump(self, seconds: float) -> None:
        """Step the clock by ``seconds`` (forward if positive), at once."""
        step = check_number("seconds", seconds, min=-DAY, max=DAY, unit="of seconds")
        self.set(self.offset + step)

    @property
    def offset(self) -> float:
        """The current offset from the real clock, in seconds."""
        return float(self.offset_file.read_text()) if self.offset_file.exists() else 0.0

    def close(self) -> None:
        """Remove the wrapper and its offset file (stop its servers first)."""
        shutil.rmtree(self._dir, ignore_errors=True)
