"""labkit.core.clients: one way to make "a client like this one, with its own pool"."""

from __future__ import annotations

import inspect

import pytest
import redis
from redis.connection import AbstractConnection

import labkit.server
from labkit.cache import ClientSideCache
from labkit.core.clients import POOL_OWNED, client_like, connection_settings, decoded
from labkit.flags import FlagStore
from labkit.locks import Multiplexed
from labkit.queues import bounded_client

HANDLER = "oss_cluster_maint_notifications_handler"
TAKES_HANDLER = HANDLER in inspect.signature(AbstractConnection.__init__).parameters


def _owned(kwargs: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in kwargs.items() if k.startswith(POOL_OWNED)}


def _with_cluster_handler(r: redis.Redis) -> redis.Redis:
    """A client whose pool carries a cluster node's notification handler.

    redis-py 8 puts ``oss_cluster_maint_notifications_handler`` in the pool
    kwargs of every node of a ``RedisCluster`` made with maintenance
    notifications on; None stands in for that handler here.
    """
    settings = {k: v for k, v in r.connection_pool.connection_kwargs.items()}
    settings = {k: v for k, v in settings.items() if not k.startswith(POOL_OWNED)}
    pool = redis.ConnectionPool(**settings, **{HANDLER: None})
    assert HANDLER in pool.connection_kwargs
    return redis.Redis(connection_pool=pool)


def test_connection_settings_drop_what_the_pool_owns(r: redis.Redis) -> None:
    """The copy keeps every setting but the pool's own state, and applies overrides."""
    kwargs = r.connection_pool.connection_kwargs
    copy = connection_settings(r, socket_timeout=1.5)
    assert not _owned(copy)
    assert copy["socket_timeout"] == 1.5
    assert {k: v for k, v in copy.items() if k != "socket_timeout"} == {
        k: v
        for k, v in kwargs.items()
        if not k.startswith(POOL_OWNED) and k != "socket_timeout"
    }


def test_every_key_a_pool_adds_for_itself_is_stripped() -> None:
    """A fresh pool's kwargs hold only what redis.Redis takes, or POOL_OWNED keys.

    A new redis-py release that adds pool state of its own fails here first.
    """
    pool = redis.Redis(host="127.0.0.1", port=1).connection_pool  # no I/O
    takes = set(inspect.signature(redis.Redis.__init__).parameters)
    added = set(pool.connection_kwargs) - takes
    assert all(k.startswith(POOL_OWNED) for k in added), sorted(added)


def test_client_like_shares_the_server_not_the_pool(r: redis.Redis) -> None:
    """The copy reads the same data on its own pool and outlives the caller's close."""
    r.set("k", "v")
    twin = client_like(r, max_connections=2, socket_timeout=2.0)
    assert twin is not None
    try:
        assert twin.connection_pool is not r.connection_pool
        assert twin.connection_pool.max_connections == 2
        assert twin.connection_pool.connection_kwargs["socket_timeout"] == 2.0
        assert twin.get("k") == "v"
        r.connection_pool.disconnect()
        assert twin.get("k") == "v"
        mine = twin.connection_pool.connection_kwargs
        theirs = r.connection_pool.connection_kwargs
        for key in ("maint_notifications_pool_handler", "himport_registry"):
            if key in theirs:  # objects bound to the caller's pool
                assert mine.get(key) is not theirs[key], key
    finally:
        twin.close()


def test_client_like_declines_a_sentinel_pool() -> None:
    """A Sentinel pool cannot be copied: None, so the caller decides."""
    sentinel = redis.Sentinel([("127.0.0.1", 1)])
    client = sentinel.master_for("nobody")  # no I/O until a command
    assert client_like(client) is None
    with pytest.raises(TypeError, match="cannot be copied"):
        labkit.server.fresh_client(client)


@pytest.mark.skipif(not TAKES_HANDLER, reason="redis-py < 8 has no cluster handler")
def test_no_copy_carries_a_cluster_nodes_handler(r: redis.Redis) -> None:
    """All five copies strip the same pool-owned keys (ClientSideCache once did not)."""
    node = _with_cluster_handler(r)
    copies = [
        bounded_client(node, "k", 1.0),
        labkit.server.fresh_client(node),
    ]
    try:
        for copy in copies:
            assert HANDLER not in copy.connection_pool.connection_kwargs
        with FlagStore(node, "copies") as store:
            assert store._listen_client is not None
            kwargs = store._listen_client.connection_pool.connection_kwargs
            assert HANDLER not in kwargs
        with ClientSideCache(node) as csc:
            for pool in (csc._listen_pool, csc._data_pool):
                assert HANDLER not in pool.connection_kwargs
        multi = Multiplexed([node], timeout=1.0)
        conn = multi._connection(0, 1.0)
        assert getattr(conn, "_oss_cluster_maint_notifications_handler", None) is None
        multi.close()
    finally:
        for copy in copies:
            copy.close()
        node.close()


def test_decoded_turns_every_bytes_into_str() -> None:
    """Nested replies of a bytes client read like a decoding client's."""
    raw = [b"0-1", [(b"1-0", {b"job": b"j", b"payload": b'"\xc3\xa9"'})], 3, None]
    assert decoded(raw) == ["0-1", [("1-0", {"job": "j", "payload": '"é"'})], 3, None]
    assert decoded(b"\xff") == "\ufffd"  # invalid UTF-8 is replaced, not raised
    text = {"a": ["b", 1.5]}
    assert decoded(text) == text
