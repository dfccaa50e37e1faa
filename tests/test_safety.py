"""labkit refuses to flush or reconfigure a server it did not start, unless told."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest
import redis

from labkit.lab.measure import wait_until
from labkit.server import Server, find_server_binary, flushdb, free_port, reconfigured
from labkit.server.errors import UnsafeServerError


@pytest.fixture(scope="module")
def foreign() -> Iterator[tuple[int, str]]:
    """(port, password) of a server started without labkit, as a user's own would be."""
    port, password = free_port(), secrets.token_hex(8)
    proc = subprocess.Popen(
        [
            find_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = redis.Redis(port=port, password=password, socket_timeout=1)
    try:
        assert wait_until(lambda: _pings(probe), timeout=10)
        yield port, password
    finally:
        probe.close()
        proc.kill()
        proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def _client(port: int, password: str, db: int) -> redis.Redis:
    return redis.Redis(port=port, password=password, db=db, decode_responses=True)


def test_flush_of_db0_on_a_foreign_server_is_refused(
    foreign: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUSHDB on db 0 of a server labkit did not start raises and deletes nothing."""
    monkeypatch.delenv("LABKIT_ALLOW_FLUSH", raising=False)
    port, password = foreign
    with _client(port, password, 0) as c:
        c.set("precious", "data")
        with pytest.raises(UnsafeServerError) as info:
            flushdb(c)
        assert c.get("precious") == "data"
        msg = str(info.value)
        assert f"localhost:{port}/0" in msg and password not in msg and "***" in msg
        assert "1 key(s)" in msg and "/15" in msg and "LABKIT_ALLOW_FLUSH=1" in msg
        assert info.value.keys == 1
        c.delete("precious")


def test_reconfigure_of_db0_on_a_foreign_server_is_refused(
    foreign: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONFIG SET through `reconfigured` is refused before anything changes."""
    monkeypatch.delenv("LABKIT_ALLOW_FLUSH", raising=False)
    port, password = foreign
    with _client(port, password, 0) as c:
        before = c.config_get("maxmemory")["maxmemory"]
        with (
            pytest.raises(UnsafeServerError, match="CONFIG SET maxmemory"),
            reconfigured(c, {"maxmemory": 10_000_000}),
        ):
            pass
        assert c.config_get("maxmemory")["maxmemory"] == before


def test_a_spare_database_opts_in(
    foreign: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL naming a database other than 0 may be flushed."""
    monkeypatch.delenv("LABKIT_ALLOW_FLUSH", raising=False)
    port, password = foreign
    with _client(port, password, 15) as c, _client(port, password, 0) as zero:
        zero.set("precious", "data")
        c.set("scratch", 1)
        assert flushdb(c) == 1
        assert c.dbsize() == 0 and zero.get("precious") == "data"
        zero.delete("precious")


def test_the_environment_variable_opts_in(
    foreign: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LABKIT_ALLOW_FLUSH=1 allows db 0 of a foreign server."""
    monkeypatch.setenv("LABKIT_ALLOW_FLUSH", "1")
    port, password = foreign
    with _client(port, password, 0) as c:
        c.set("scratch", 1)
        assert flushdb(c) == 1


def test_embedded_servers_need_no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server labkit started may be flushed and reconfigured on db 0."""
    monkeypatch.delenv("LABKIT_ALLOW_FLUSH", raising=False)
    with Server() as srv, srv.client() as c:
        c.set("k", 1)
        assert flushdb(c) == 1
        with reconfigured(c, {"maxmemory": 12_345_678}) as old:
            assert c.config_get("maxmemory")["maxmemory"] == "12345678"
        assert c.config_get("maxmemory")["maxmemory"] == old["maxmemory"]


def test_settings_are_restored_when_the_block_raises() -> None:
    """`reconfigured` puts the old values back even after an error."""
    with Server() as srv, srv.client() as c:
        before = c.config_get("maxmemory-policy")["maxmemory-policy"]
        with (
            pytest.raises(RuntimeError),
            reconfigured(c, {"maxmemory-policy": "allkeys-lru"}),
        ):
            raise RuntimeError("experiment failed")
        assert c.config_get("maxmemory-policy")["maxmemory-policy"] == before


def test_unknown_setting_is_refused_before_any_change() -> None:
    """An unknown parameter name raises ValueError and sets nothing."""
    with Server() as srv, srv.client() as c:
        with (
            pytest.raises(ValueError, match="no-such-setting"),
            reconfigured(c, {"maxmemory": 1_000_000, "no-such-setting": 1}),
        ):
            pass
        assert c.config_get("maxmemory")["maxmemory"] == "0"
