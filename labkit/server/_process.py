"""One embedded server process: start, stop, kill, restart; config and secrets."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from labkit.server._binary import binary_version, find_server_binary
from labkit.server._clients import client_options, no_retry, server_url
from labkit.server._dirs import make_private_dir, write_private
from labkit.server._spawn import free_port, spawn
from labkit.server.errors import ServerStartError

__all__ = [
    "CONFIG_NAME",
    "ConfigValue",
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


def _binary_major_version(binary: str) -> int:
    """Major version of ``binary`` (Sentinel and the config use it)."""
    return binary_version(binary)[1][0]


# --- lifecycle -------------------------------------------------------------
#
# Three layers make sure no server (and no data dir) outlives the Python process
# that started it:
# 1. close() / the context manager, the normal path;
# 2. an atexit hook, for interpreters that end normally (Ctrl-C included): it
#    stops every running server and removes every data dir labkit created;
# 3. on Linux, PR_SET_PDEATHSIG (see _spawn.spawn): the kernel SIGKILLs the
#    server when its parent dies, even when the parent was SIGKILLed; the data
#    dir left behind is removed by the next labkit process (_dirs.sweep).

_running: set[Server] = set()
_running_lock = threading.Lock()
_owned_dirs: set[Path] = set()  # data dirs labkit created and has not removed


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
    for path in list(_owned_dirs):  # stopped but never closed: remove anyway
        shutil.rmtree(path, ignore_errors=True)
        _owned_dirs.discard(path)


def _quote(name: str, value: str) -> str:
    """``value`` as a double-quoted config token (the server's own escapes).

    Raises:
        ValueError: ``value`` holds a control character (a newline would start
            a new directive: config injection).
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(
            f"{name}={value!r}: must not contain control characters "
            "(newlines, tabs, NUL...)"
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_password(password: object) -> str:
    if not isinstance(password, str):
        raise TypeError(f"password={password!r}: must be a str (or None: random)")
    if not 1 <= len(password) <= 512:
        raise ValueError(
            f"password of {len(password)} characters: must be 1 to 512 characters"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise ValueError(
            "password: must not contain control characters (newlines, tabs...); "
            "a newline would inject config lines"
        )
    return password


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
        if config is not None and not isinstance(config, Mapping):
            hint = ""
            if isinstance(config, str) and " " in config.strip():
                name, _, value = config.strip().partition(" ")
                hint = f" (write config={{{name!r}: {value.strip()!r}}})"
            raise TypeError(
                f"config={config!r:.80}: must be a mapping of directive -> value, "
                f"e.g. {{'appendonly': 'yes'}}, or None{hint}"
            )
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
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                if isinstance(v, bool) or not isinstance(v, str | int | float):
                    raise TypeError(
                        f"config[{key!r}] = {value!r}: values must be str, int, "
                        "float or a list of those"
                    )
                if any(ord(c) < 32 or ord(c) == 127 for c in str(v)):
                    raise ValueError(
                        f"config[{key!r}] = {value!r}: must not contain control "
                        "characters (a newline would inject config lines)"
                    )
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise ValueError(f"port={port!r}: expected an int from 1 to 65535")
        if (
            isinstance(startup_timeout, bool)
            or not isinstance(startup_timeout, int | float)
            or not math.isfinite(startup_timeout)
            or not 0 < startup_timeout <= 600
        ):
            raise ValueError(
                f"startup_timeout={startup_timeout!r}: must be a finite number of "
                "seconds > 0 and <= 600"
            )
        if data_dir is not None:
            _quote("data_dir", os.fspath(data_dir))  # refuses control characters
        self.config: dict[str, ConfigValue] = config
        self.binary = binary or find_server_binary()
        self.host = "127.0.0.1"
        self.password = (
            secrets.token_hex(16) if password is None else _check_password(password)
        )
        self.startup_timeout = float(startup_timeout)
        self._fixed_port = port is not None
        self._port = port
        self._owns_dir = data_dir is None
        if data_dir is None:
            self.data_dir = make_private_dir()
            _owned_dirs.add(self.data_dir)
        else:
            self.data_dir = Path(data_dir)
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
        """A ``redis://`` URL for this server, password included (percent-encoded)."""
        return server_url(self.host, self.port, self.password)

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
                out.append(f"{key} {text if text else chr(34) * 2}")
        out += [
            f"port {self.port}",
            f"dir {_quote('data_dir', str(self.data_dir))}",
            'logfile "server.log"',
            "daemonize no",
            f"requirepass {_quote('password', self.password)}",
        ]
        return "\n".join(out) + "\n"

    def _launch(self) -> None:
        conf = self.data_dir / config_name()
        write_private(conf, self._config_text())  # 0600: it holds the password
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
        log = self._redact(
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

    def _redact(self, text: str) -> str:
        """``text`` without the password (a bad config line is quoted in the log)."""
        for secret in {self.password, _quote("password", self.password)}:
            text = text.replace(secret, "***")
        return text

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
            _owned_dirs.discard(self.data_dir)

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
        """A ``redis.Redis`` for this server, with labkit's client defaults.

        ``decode_responses=True``, bounded socket timeouts and one retry on a
        dropped connection (see :func:`labkit.server.client_options`); any
        keyword overrides them.
        """
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            **client_options(**kwargs),
        )

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the server's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
