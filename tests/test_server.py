"""labkit.server: embedded servers start, stop, crash, restart and fail clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

import labkit
from labkit.errors import (
    ServerBinaryNotFoundError,
    ServerStartError,
    ServerUnreachableError,
)
from labkit.server import Server, find_server_binary, mask_url, no_retry
from labkit.server.__main__ import labkit_server_processes


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
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
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
    started = time.perf_counter()
    with pytest.raises(ServerUnreachableError) as info:
        labkit.connect()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "secret" not in message
    assert "unset REDIS_URL" in message
    # No hidden retry loop: the failure is reported at once (not a timing
    # claim about Redis, just that labkit does not sit in backoff).
    assert time.perf_counter() - started < 5


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
