"""labkit.lab.sharding.reshard: a cluster grows by one master under live traffic."""

from __future__ import annotations

import math
import os
import re
import signal
import threading
import warnings
from typing import Any

import pytest
import redis
from checks import pid_of
from redis.cluster import PRIMARY, ClusterNode

from labkit.core.clients import supports
from labkit.core.wait import wait_until
from labkit.errors import MoveError
from labkit.lab.sharding import sample_keys
from labkit.lab.sharding.failover import failover_under_traffic
from labkit.lab.sharding.hotspots import (
    drive,
    enable_slot_stats,
    hot_spots,
    zipf_counts,
)
from labkit.lab.sharding.migration import fill_tags, migration_under_traffic, pick_tags
from labkit.lab.sharding.reshard import (
    CHECKED_REDIS_PY,
    LiveTraffic,
    add_known_master,
    add_master,
    masters_by_id,
    node_id,
    redirect_counts,
    reshard,
    safe_client,
    slots_of,
)
from labkit.lab.sharding.scale import WriteLoad
from labkit.server import Cluster, Server
from labkit.sharding import key_slot, tagged

# These tests start, kill and rewire embedded servers (see conftest TIER).
pytestmark = pytest.mark.embedded


def test_key_slot_matches_the_server() -> None:
    """labkit's CRC16 slot equals CLUSTER KEYSLOT, hash tags included."""
    keys = [*sample_keys(300, seed=3), "{user:1}:cart", "a{}b", "x{y}{z}", "é{ü}"]
    with Cluster(masters=1) as cluster:
        node = cluster.nodes[0].client()
        for key in keys:
            assert key_slot(key) == node.execute_command("CLUSTER KEYSLOT", key)


def test_live_reshard_loses_nothing() -> None:
    """Keys written before and during a reshard to a 4th master all read back."""
    with Cluster(masters=3) as cluster:
        rc = cluster.client()
        before = {f"pre:{i}": str(i) for i in range(3000)}
        pipe = rc.pipeline()
        for key, value in before.items():
            pipe.set(key, value)
        pipe.execute()
        new = add_master(cluster)
        assert len(masters_by_id(cluster)) == 3  # it owns no slot yet
        with LiveTraffic(cluster, safe=True) as live:
            report = reshard(cluster, new)
            traffic = live.stop()
        lost = live.lost(rc)
        print(
            f"\nreshard: {report}; traffic: {traffic.writes} writes, "
            f"{traffic.reads} reads, {traffic.failed} failed {traffic.errors}"
        )
        assert traffic.writes > 50 and traffic.reads > 50
        assert traffic.failed == 0 and lost == []
        assert report.slots == 4096 and len(slots_of(cluster)[node_id(new)]) == 4096
        assert 0.18 < new.client().dbsize() / (3000 + len(traffic.acknowledged)) < 0.32
        assert rc.mget_nonatomic(list(before)) == list(before.values())
        assert all(
            n.client().execute_command("CLUSTER INFO")["cluster_state"] == "ok"
            for n in cluster.nodes
        )
        rc.close()


def migrating_to_new_master(cluster: Cluster, key: str) -> tuple[Server, Server]:
    """Add a master and leave ``key``'s slot half-way towards it."""
    new = add_master(cluster)
    slot = key_slot(key)
    owner = next(m for m in cluster.masters if slot in slots_of(cluster)[node_id(m)])
    new_id, owner_id = node_id(new), node_id(owner)
    new.client().execute_command("CLUSTER SETSLOT", slot, "IMPORTING", owner_id)
    owner.client().execute_command("CLUSTER SETSLOT", slot, "MIGRATING", new_id)
    return new, owner


def test_safe_client_follows_ask_to_a_new_master() -> None:
    """While a slot migrates to a slotless master, the safe client follows ASK."""
    with Cluster(masters=2) as cluster:
        safe = safe_client(cluster)
        safe.ping()  # learn the topology before the new master exists
        new, owner = migrating_to_new_master(cluster, "demo:{ask}")
        # The key is absent from the source, so the source answers ASK <new>.
        assert safe.set("demo:{ask}", "here") is True
        assert safe.get("demo:{ask}") == "here"
        assert new.client().dbsize() == 1 and owner.client().dbsize() == 0
        safe.close()


#: What stock redis-py does on an ASK to a master absent from CLUSTER SLOTS
#: (redis/redis-py issue #4015; PR #4214 proposes the fix), per version checked
#: here: "crashes" (AttributeError) or "follows". A version not listed is
#: expected to crash, so the release that fixes it makes this test fail, and
#: ReshardSafeCluster's workaround can then be retired for it.
STOCK_ASK_TO_SLOTLESS_MASTER = {"8.1.0": "crashes", "8.2.0": "crashes"}


def stock_ask_to_slotless_master() -> str:
    """Run stock RedisCluster into issue #4015; "crashes" or "follows"."""
    with Cluster(masters=2) as cluster:
        stock = cluster.client()
        try:
            stock.ping()
            new, _ = migrating_to_new_master(cluster, "demo:{ask}")
            try:
                stock.set("demo:{ask}", "here")
            except AttributeError:
                return "crashes"
            assert new.client().get("demo:{ask}") == "here"
            return "follows"
        finally:
            stock.close()


def test_stock_client_on_ask_to_a_new_master_is_what_we_recorded() -> None:
    """Stock redis-py does on issue #4015 what we recorded for its version."""
    expected = STOCK_ASK_TO_SLOTLESS_MASTER.get(redis.__version__, "crashes")
    seen = stock_ask_to_slotless_master()
    assert seen == expected, (
        f"redis-py {redis.__version__} {seen} on an ASK to a slotless master "
        f"(issue #4015); we expected it to be {expected}: record it in "
        "STOCK_ASK_TO_SLOTLESS_MASTER"
    )


def test_reshard_refuses_bad_counts() -> None:
    """Asking for no slots or more than exist raises ValueError."""
    with Cluster(masters=2) as cluster:
        new = add_master(cluster)
        for bad in (0, 20_000):
            with pytest.raises(ValueError, match=f"slots={bad}"):
                reshard(cluster, new, bad)
        with pytest.raises(ValueError, match="batch=0"):
            reshard(cluster, new, 10, batch=0)


def test_plain_client_sees_crossslot() -> None:
    """A multi-key command over two slots gets CROSSSLOT; a hash tag fixes it."""
    with Cluster(masters=2) as cluster:
        node = cluster.nodes[0].client()
        with pytest.raises(redis.ResponseError, match=r"don't hash to the same slot"):
            node.execute_command("MGET", "{a}x", "{b}y")
        rc = cluster.client()
        rc.mset_nonatomic({"{u1}:name": "ada", "{u1}:city": "lima"})
        assert rc.execute_command("MGET", "{u1}:name", "{u1}:city") == ["ada", "lima"]
        rc.close()


def test_private_node_table_is_where_labkit_expects_it() -> None:
    """add_known_master's redis-py internals: this fails loudly if they change."""
    if redis.__version__ not in CHECKED_REDIS_PY:
        warnings.warn(
            f"redis-py {redis.__version__} is not among the versions "
            f"add_known_master was checked against {CHECKED_REDIS_PY}",
            stacklevel=1,
        )
    with Cluster(masters=1) as cluster:
        rc = cluster.client()
        try:
            cache = rc.nodes_manager.nodes_cache
            first = cluster.nodes[0]
            assert isinstance(cache, dict)
            assert isinstance(cache[f"{first.host}:{first.port}"], ClusterNode)
            assert rc.get_node(node_name="127.0.0.1:1") is None
            assert add_known_master(rc, "127.0.0.1", 1) is True
            node = rc.get_node(node_name="127.0.0.1:1")
            assert node is not None and node.server_type == PRIMARY
            assert add_known_master(rc, "127.0.0.1", 1) is False
        finally:
            rc.close()


@pytest.mark.timeout(180)
def test_frozen_target_stops_a_reshard_in_seconds_losing_nothing() -> None:
    """SIGSTOP of the new master mid-reshard: MoveError within seconds, keys intact."""
    with Cluster(masters=2) as cluster:
        rc = cluster.client()
        data = {f"k:{i}": str(i) for i in range(2000)}
        rc.mset_nonatomic(data)
        new = add_master(cluster)
        probe = new.client(socket_timeout=1)

        def freeze() -> None:
            wait_until(lambda: probe.dbsize() > 0, timeout=60, interval=0.002)
            os.kill(pid_of(new), signal.SIGSTOP)

        watcher = threading.Thread(target=freeze, daemon=True)
        watcher.start()
        try:
            with pytest.raises(MoveError, match="half-moved") as info:
                reshard(cluster, new, 1000, batch=1)
        finally:
            watcher.join(timeout=10)
            os.kill(pid_of(new), signal.SIGCONT)
        assert "timeout" in str(info.value)  # MIGRATE's own timeout fired
        assert info.value.target.endswith(str(new.port))
        safe = safe_client(cluster)
        try:  # every key still answers, through ASK where its slot is half-moved
            assert [safe.get(k) for k in data] == list(data.values())
        finally:
            safe.close()
            rc.close()
            probe.close()


def test_key_by_key_and_atomic_migration_under_traffic() -> None:
    """Key by key: ASK/TRYAGAIN replies, no client failure; atomic (Valkey 9+): none."""
    with Cluster(masters=2) as cluster:
        rc = cluster.client()
        new = add_master(cluster)
        a, b = cluster.masters[0], cluster.masters[1]
        owners = slots_of(cluster)
        slots_a, slots_b = owners[node_id(a)][-64:], owners[node_id(b)][-64:]
        tags_a, tags_b = pick_tags(slots_a, 4), pick_tags(slots_b, 4, prefix="h")
        assert fill_tags(rc, tags_a + tags_b, 50) == 400
        # batch=1: one key per MIGRATE, so the slots stay split for longer.
        kbk = migration_under_traffic(
            cluster, slots_a, a, new, atomic=False, groups=tags_a, baseline=0.3, batch=1
        )
        print(f"\nkey by key: {kbk._replace(traffic=None)}")  # type: ignore[arg-type]
        # A multi-key command may exhaust redis-py's TRYAGAIN retries (about
        # 0.4 s) on a loaded machine; nothing else may fail. The traffic met
        # the split slots: an ASK (one key) or a TRYAGAIN (a pair), however
        # fast the move (a 38 ms move once drew 9 TRYAGAIN and no ASK).
        assert kbk.ask + kbk.tryagain > 0 and kbk.keys >= 200
        assert set(kbk.traffic.errors) <= {"TryAgainError"}
        assert kbk.traffic.multi > 0 and kbk.ops_during > 0
        if supports(rc, "atomic-slot-migration"):
            atomic = migration_under_traffic(
                cluster, slots_b, b, new, atomic=True, groups=tags_b, baseline=0.3
            )
            print(f"atomic: {atomic._replace(traffic=None)}")  # type: ignore[arg-type]
            assert atomic.ask == 0 and atomic.tryagain == 0 and atomic.failed == 0
            assert atomic.keys >= 200
            assert len(slots_of(cluster)[node_id(new)]) == 128
        keys = [tagged(t, i) for t in tags_a + tags_b for i in range(50)]
        assert all(v is not None for v in rc.mget_nonatomic(keys))
        rc.close()


def test_atomic_reshard_refused_where_unsupported_or_runs() -> None:
    """reshard(atomic=True) moves slots on Valkey 9+, else refuses by name."""
    with Cluster(masters=2) as cluster:
        rc = cluster.client()
        rc.mset_nonatomic({f"k:{i}": str(i) for i in range(500)})
        new = add_master(cluster)
        if not supports(rc, "atomic-slot-migration"):
            with pytest.raises(ValueError, match="atomic=True"):
                reshard(cluster, new, 100, atomic=True)
            return
        before = redirect_counts(cluster)
        report = reshard(cluster, new, 1000, atomic=True)
        assert report.slots == 1000 and report.keys > 0
        assert len(slots_of(cluster)[node_id(new)]) == 1000
        assert redirect_counts(cluster)["ASK"] == before["ASK"]
        assert rc.mget_nonatomic([f"k:{i}" for i in range(500)]) == [
            str(i) for i in range(500)
        ]
        rc.close()


def test_failover_under_traffic_loses_no_confirmed_write() -> None:
    """A primary killed: promoted after the node timeout; confirmed writes kept."""
    with Cluster(masters=3, replicas=1) as cluster:
        victim = cluster.primaries()[0]
        replica = cluster.replicas_of(victim)[0]
        run = failover_under_traffic(
            cluster, victim, node_timeout_ms=1000, value_size=65_536
        )
        print(f"\n{run}")
        assert run.promoted_after > 1.0 and run.first_write_after > 1.0
        assert run.confirmed >= 20  # the warm-up: a sample worth checking
        assert run.confirmed_lost == 0 and run.unconfirmed > 0
        assert run.lost > 0 and run.during_lag > 0
        assert replica in cluster.primaries() and victim not in cluster.primaries()
        assert cluster.replicas_of(replica) == [victim] and cluster.is_ok()


def test_hot_spots_one_shared_tag_is_one_slot() -> None:
    """CLUSTER SLOT-STATS: a shared tag puts all keys and CPU in one slot."""
    with Cluster(masters=2) as cluster:
        rc = cluster.client()
        if not supports(rc, "cluster-slot-stats"):
            pytest.skip("no CLUSTER SLOT-STATS on this server")
        counts = zipf_counts(200, 2000, seed=1)
        assert counts.sum() == 2000 and counts[0] == counts.max()
        enable_slot_stats(cluster)
        assert drive(rc, counts, lambda i: f"{{all}}:{i}") == 2000
        shared = hot_spots(cluster)
        assert shared.slots_used == 1 and shared.busiest_cpu_share == 1.0
        assert sum(shared.keys.values()) == (counts > 0).sum()  # users with a request
        rc.close()


def test_write_load_measures_a_rate() -> None:
    """WriteLoad: client processes write to a cluster and report a rate."""
    with WriteLoad(processes=2, seconds=0.5) as load, Cluster(masters=1) as c:
        result = load.run(c)
    assert result.masters == 1 and result.processes == 2 and result.ops_per_second > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"prefix": "{x}"}, ValueError, "prefix='{x}'"),
        ({"prefix": ""}, ValueError, "prefix=''"),
        ({"keyspace": 0}, ValueError, "keyspace=0"),
        ({"groups": "abc"}, TypeError, "groups='abc'"),
        ({"groups": ["ok", ""]}, ValueError, "groups item=''"),
        ({"max_seconds": math.inf}, ValueError, "max_seconds=inf"),
    ],
)
def test_live_traffic_bad_input(
    kwargs: dict[str, Any], error: type, words: str
) -> None:
    """LiveTraffic checks its arguments before starting any process."""
    with Cluster(masters=1) as cluster, pytest.raises(error, match=re.escape(words)):
        LiveTraffic(cluster, **kwargs)


def test_live_traffic_refuses_a_non_cluster() -> None:
    """LiveTraffic needs a labkit Cluster."""
    with pytest.raises(TypeError, match="cluster='x'"):
        LiveTraffic("x")  # type: ignore[arg-type]
