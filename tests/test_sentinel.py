"""labkit.server.Sentinel: a real Sentinel promotes a replica when the primary dies."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
import redis

from labkit.lab.proxy import Proxy
from labkit.server import Sentinel, Server, no_retry, replica_config

# These tests start, kill and rewire embedded servers (see conftest TIER).
pytestmark = pytest.mark.embedded


def test_sentinel_failover_promotes_the_replica() -> None:
    """After the primary is SIGKILLed, a Sentinel-aware client writes to the new one."""
    password = secrets.token_hex(16)
    primary = Server(password=password, config={"masterauth": password}).start()
    replica = Server(password=password, config=replica_config(primary)).start()
    sentinel = Sentinel(primary, down_after_ms=500, failover_timeout_ms=2000)
    try:
        sentinel.start()
        assert sentinel.master_address() == ("127.0.0.1", primary.port)
        deadline = time.monotonic() + 90  # a hang guard that prints the logs
        while replica.client().info("replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline, replica.log_tail(20)
            time.sleep(0.05)  # initial sync
        writer = primary.client()  # WAIT covers this connection's writes only
        writer.set("before", "1")
        assert writer.wait(1, 2000) == 1  # the replica has it
        primary.kill()
        while sentinel.master_address() != ("127.0.0.1", replica.port):
            assert time.monotonic() < deadline, sentinel.log_tail(20)
            time.sleep(0.1)
        r = sentinel.master_for(retry=no_retry())
        while True:  # the promoted replica may need a moment to accept writes
            try:
                r.set("after", "2")
                break
            except (redis.exceptions.ReadOnlyError, redis.exceptions.ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.get("before") == "1" and r.get("after") == "2"
        assert replica.client().info("replication")["role"] == "master"
    finally:
        for server in (sentinel, replica, primary):
            server.close()


def test_sentinel_monitors_through_a_proxy_from_the_start() -> None:
    """monitor=(host, port): Sentinel names the proxy, also after a restart."""
    with Server() as primary, Proxy.to(primary) as front:
        sentinel = Sentinel(primary, monitor=(front.host, front.port))
        try:
            sentinel.start()
            assert sentinel.master_address() == (front.host, front.port)
            sentinel.restart()
            assert sentinel.master_address() == (front.host, front.port)
            with sentinel.client() as s:
                info = s.sentinel_master(sentinel.name)
                assert info["port"] == front.port and info["is_master"]
        finally:
            sentinel.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"quorum": 0}, ValueError, "quorum=0"),
        ({"quorum": True}, TypeError, "quorum=True"),
        ({"down_after_ms": 10}, ValueError, "down_after_ms=10"),
        ({"down_after_ms": 500.0}, TypeError, "down_after_ms=500.0"),
        ({"failover_timeout_ms": 10**9}, ValueError, "failover_timeout_ms=1000000000"),
        ({"name": "bad name"}, ValueError, "name='bad name'"),
        ({"name": ""}, ValueError, "name=''"),
        ({"monitor": "127.0.0.1:6379"}, TypeError, "monitor='127.0.0.1:6379'"),
        ({"monitor": ("127.0.0.1", 0)}, ValueError, "monitor port=0"),
        ({"monitor": ("a b", 6379)}, ValueError, "monitor="),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    """Bad Sentinel settings are refused before anything starts."""
    with Server() as primary, pytest.raises(error, match=match):
        Sentinel(primary, **kwargs)
    with pytest.raises(TypeError, match="primary="):
        Sentinel("127.0.0.1:6379")  # type: ignore[arg-type]
