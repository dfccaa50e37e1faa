"""labkit.server.Cluster: a real cluster-mode deployment of embedded servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from labkit.errors import CrossSlotError
from labkit.lab.sharding.bigkey import migrate_watched
from labkit.server import SLOTS, Cluster, Server, slot_ranges
from labkit.sharding import (
    JumpHash,
    ShardedClient,
    cluster_nodes,
    same_slot,
    tagged,
)

# These tests start, kill and rewire embedded servers (see conftest TIER).
pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One 3-master cluster for the module (forming one takes about 2 s)."""
    with Cluster(masters=3) as c:
        yield c


def test_cluster_state_ok_and_all_slots_assigned(cluster: Cluster) -> None:
    """Every node reports state ok and all 16384 slots are assigned."""
    assert cluster.is_ok()
    for node in cluster.nodes:
        info = node.client().execute_command("CLUSTER INFO")
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == SLOTS
        assert int(info["cluster_known_nodes"]) == 3


def test_ready_means_the_bus_is_meshed(cluster: Cluster) -> None:
    """Once ready, each node has a bus link to and from every other node.

    (A classic PUBLISH goes over those links, fire and forget: before they
    exist a message can be dropped, as one 07b run showed.)
    """
    ids = {n.port: n.client().execute_command("CLUSTER MYID") for n in cluster.nodes}
    for node in cluster.nodes:
        links = node.client().execute_command("CLUSTER", "LINKS")
        seen = {(link["direction"], link["node"]) for link in links}
        peers = {i for port, i in ids.items() if port != node.port}
        assert {(d, p) for p in peers for d in ("to", "from")} <= seen


def test_1000_keys_spread_over_all_masters(cluster: Cluster) -> None:
    """A RedisCluster client sets and gets 1000 keys living on all three masters."""
    rc = cluster.client()
    for i in range(1000):
        rc.set(f"key:{i}", i)
    assert all(rc.get(f"key:{i}") == str(i) for i in range(1000))
    per_node = [n.client().dbsize() for n in cluster.masters]
    assert sum(per_node) == 1000
    assert all(count > 250 for count in per_node), per_node
    rc.close()


def test_plain_client_on_wrong_node_gets_moved(cluster: Cluster) -> None:
    """A non-cluster client asking the wrong node receives a MOVED redirect."""
    rc = cluster.client()
    slot = rc.keyslot("user:42")
    owner = rc.get_node_from_key("user:42")
    wrong = next(n for n in cluster.masters if n.port != owner.port)
    # redis-py turns the "MOVED <slot> <host:port>" reply into MovedError.
    with pytest.raises(redis.exceptions.MovedError, match=f"^{slot} 127.0.0.1:"):
        wrong.client().get("user:42")


def test_slot_ranges_cover_every_slot_once() -> None:
    """The even split covers 0..16383 with no gap and no overlap."""
    for masters in (1, 2, 3, 5, 7):
        ranges = slot_ranges(masters)
        covered = [s for lo, hi in ranges for s in range(lo, hi + 1)]
        assert covered == list(range(SLOTS))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"masters": 0}, "masters=0"),
        ({"replicas": -1}, "replicas=-1"),
        ({"node_timeout_ms": 5}, "node_timeout_ms=5"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    """Bad sizes are refused before any process starts."""
    with pytest.raises(ValueError, match=match):
        Cluster(**kwargs)


def test_cluster_with_replicas() -> None:
    """One replica per master: 6 nodes, replicas attached and in sync."""
    with Cluster(masters=3, replicas=1) as c:
        assert len(c.nodes) == 6
        roles = [n.client().info("replication")["role"] for n in c.nodes]
        assert roles.count("master") == 3 and roles.count("slave") == 3
        for node in c.nodes:  # gossip has reached every node (Redis 7.0 lagged)
            with node.client() as client:
                assert sum(not n.is_master for n in cluster_nodes(client)) == 3
        assert all(c.replicas_of(m) for m in c.masters)


def test_cluster_nodes_parses_the_live_cluster(cluster: Cluster) -> None:
    """cluster_nodes: three usable masters owning all 16384 slots, one of them me."""
    with cluster.nodes[0].client() as client:
        view = cluster_nodes(client)
    assert len(view) == 3 and all(n.is_master and n.usable for n in view)
    assert sum(n.slot_count() for n in view) == SLOTS
    me = next(n for n in view if n.myself)
    assert me.port == cluster.nodes[0].port
    assert {n.address for n in view} == {f"{n.host}:{n.port}" for n in cluster.nodes}
    rc = cluster.client()
    try:  # a RedisCluster asks its default node: the same table
        assert {n.id for n in cluster_nodes(rc)} == {n.id for n in view}
    finally:
        rc.close()


def test_same_slot_agrees_with_the_server(cluster: Cluster) -> None:
    """Where same_slot raises, a node answers CROSSSLOT; tagged keys work together."""
    rc = cluster.client()
    try:
        keys = [tagged("user:7", "name"), tagged("user:7", "cart")]
        slot = same_slot(keys)
        owner = rc.get_node_from_key(keys[0])
        with redis.Redis(
            host=owner.host, port=owner.port, password=cluster.password
        ) as node:
            node.mset(dict.fromkeys(keys, "x"))
            assert (
                node.mget(keys) == [b"x", b"x"]
                and node.cluster("keyslot", keys[0]) == slot
            )
            with pytest.raises(CrossSlotError):
                same_slot(["{}a", "{}b"])
            with pytest.raises(redis.ResponseError, match="same slot"):
                node.mget("{}a", "{}b")
    finally:
        rc.close()


def test_sharded_client_refuses_a_cluster_client(cluster: Cluster) -> None:
    """ShardedClient over a RedisCluster is refused with the reason."""
    rc = cluster.client()
    try:
        with pytest.raises(TypeError, match="routes every key to its slot's owner"):
            ShardedClient({"a": rc}, JumpHash(["a"]))  # type: ignore[dict-item]
    finally:
        rc.close()


def test_cluster_client_has_a_socket_timeout(cluster: Cluster) -> None:
    """Cluster.client() bounds every call: a frozen node fails, it does not hang."""
    rc = cluster.client()
    try:
        node = rc.get_default_node()
        kwargs = node.redis_connection.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 5.0
    finally:
        rc.close()


def test_migrate_watched_moves_the_key_and_counts_both_nodes_busy() -> None:
    """migrate_watched: the key moves, each node reports time spent on it."""
    with Server(password="pw") as source, Server(password="pw") as target:
        with source.client() as client:
            for start in range(0, 50_000, 10_000):
                client.rpush("big", *range(start, start + 10_000))
            moved = migrate_watched(source, target, "big", password="pw")
            assert client.exists("big") == 0
        with target.client() as client:
            assert client.llen("big") == 50_000
        assert moved.source_busy > 0 and moved.target_busy > 0 and moved.pings > 0
    assert not source.running and not target.running
