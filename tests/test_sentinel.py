"""labkit.server.Sentinel: a real Sentinel promotes a replica when the primary dies."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from labkit.server import Sentinel, Server, no_retry, replica_config


def test_sentinel_failover_promotes_the_replica() -> None:
    """After the primary is SIGKILLed, a Sentinel-aware client writes to the new one."""
    password = secrets.token_hex(16)
    primary = Server(password=password, config={"masterauth": password}).start()
    replica = Server(password=password, config=replica_config(primary)).start()
    sentinel = Sentinel(primary, down_after_ms=500, failover_timeout_ms=2000)
    try:
        sentinel.start()
        assert sentinel.master_address() == ("127.0.0.1", primary.port)
        deadline = time.monotonic() + 30
        while replica.client().info("replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline, replica.log_tail(20)
            time.sleep(0.05)  # initial sync
        primary.client().set("before", "1")
        assert primary.client().wait(1, 2000) == 1  # the replica has it
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quorum": 0}, "quorum=0"),
        ({"down_after_ms": 10}, "down_after_ms=10"),
        ({"name": "bad name"}, "name='bad name'"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    """Bad Sentinel settings are refused before anything starts."""
    with Server() as primary, pytest.raises(ValueError, match=match):
        Sentinel(primary, **kwargs)
