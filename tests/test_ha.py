"""labkit.lab.persistence.ha: replication, WAIT on the right connection, Sentinel
failover, Sentinel's event stream, split brain through proxies; bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest

from labkit.lab.errors import ExperimentTimeoutError
from labkit.lab.persistence.ha import (
    ReplicatedGroup,
    SentinelEvents,
    failover_test,
    frozen,
    split_brain_test,
)
from labkit.lab.proxy import running_proxies
from labkit.server import Server, running_servers

# These tests start, kill and rewire embedded servers (see conftest TIER).
pytestmark = pytest.mark.embedded


@pytest.mark.timeout(180)
def test_sentinel_failover_client_writes_and_reads_within_bounded_time() -> None:
    """After the primary is killed, a Sentinel client writes and reads again, or
    failover_test raises ExperimentTimeoutError at its timeout."""
    with ReplicatedGroup(sentinel=True) as group:
        replica_port = group.replicas[0].port
        result = failover_test(group, writes_before=100, writes_after=20, timeout=60)
        assert result.new_port == replica_port != result.old_port
        # The replica had every write but the last one or two (timing); only
        # those can be lost, so the bound is exact, "lost == 0" only likely.
        assert result.acked == 120 and result.lost <= result.behind
        assert result.attempts[-1].outcome == "ok"
        assert {a.outcome for a in result.attempts} <= {
            "ok",
            "down",
            "timeout",
            "refused",
        }
        assert group.sentinel is not None
        client = group.sentinel.master_for()
        client.set("after-failover", "yes")
        assert client.get("after-failover") == "yes" and client.get("fo:0") == "0"
        assert group.replicas[0].client().info("replication")["role"] == "master"


def test_writes_acknowledged_during_a_partition_are_lost_in_the_failover() -> None:
    """Writes acked while the replica was cut off are gone after the promotion."""
    with ReplicatedGroup(sentinel=True) as group:
        result = failover_test(
            group, writes_before=100, writes_after=10, freeze_last=20
        )
        assert result.unreplicated == result.behind == result.lost == 20


def test_wait_counts_replicas_but_does_not_undo_the_write() -> None:
    """WAIT returns how many replicas have the write; 0 leaves it on the primary."""
    with ReplicatedGroup() as group:
        assert group.primary is not None
        primary, replica = group.primary.client(), group.replicas[0].client()
        primary.set("a", "1")
        assert primary.wait(1, 2000) == 1 and replica.get("a") == "1"
        with frozen(group.replicas[0]):
            primary.set("b", "2")
            assert primary.wait(1, 200) == 0  # timed out: no replica acked
            assert primary.get("b") == "2"  # ... and the write stands
        assert primary.wait(1, 5000) == 1 and replica.get("b") == "2"


@pytest.mark.timeout(120)
def test_wait_covers_only_the_writes_of_its_own_connection() -> None:
    """Replica frozen: WAIT on the writer's connection times out with 0, while a
    fresh connection, which wrote nothing, gets 1 at once (WAIT 0 = no timeout:
    had it anything to wait for, it would block until pytest-timeout)."""
    with ReplicatedGroup() as group:
        assert group.primary is not None
        writer = group.primary.client(single_connection_client=True)
        fresh = group.primary.client(single_connection_client=True)
        writer.set("x", "1")
        assert writer.wait(1, 5000) == 1
        with frozen(group.replicas[0]):
            writer.set("y", "2")
            assert fresh.wait(1, 0) == 1  # nothing of its own to wait for
            assert writer.wait(1, 300) == 0  # its write is not on the replica
        writer.close()
        fresh.close()


@pytest.mark.needs("waitaof")
@pytest.mark.timeout(120)
def test_waitaof_covers_only_the_writes_of_its_own_connection() -> None:
    """appendfsync no: WAITAOF on the writer times out with [0, 0]; a fresh
    connection gets [1, 0] at once (timeout 0 = none: it would block)."""
    with Server(config={"appendonly": "yes", "appendfsync": "no"}) as srv:
        writer = srv.client(single_connection_client=True)
        fresh = srv.client(single_connection_client=True)
        writer.set("k", "v")
        assert fresh.execute_command("WAITAOF", 1, 0, 0) == [1, 0]
        assert writer.execute_command("WAITAOF", 1, 0, 200) == [0, 0]
        writer.close()
        fresh.close()


@pytest.mark.needs("waitaof")
def test_a_replica_acknowledgement_is_not_its_disk() -> None:
    """A replica without AOF acknowledges a write (WAIT 1) but never fsyncs it
    (WAITAOF 0 1 answers 0 replicas)."""
    with ReplicatedGroup() as group:
        assert group.primary is not None
        writer = group.primary.client(single_connection_client=True)
        writer.set("k", "v")
        assert writer.wait(1, 5000) == 1
        assert writer.execute_command("WAITAOF", 0, 1, 300) == [0, 0]
        writer.close()


def test_sentinel_event_stream_shows_the_failover_in_order() -> None:
    """PSUBSCRIBE * on the Sentinel records +sdown, +odown, +switch-master in order."""
    with ReplicatedGroup(sentinel=True) as group:
        assert group.sentinel is not None
        with SentinelEvents(group.sentinel) as events:
            result = failover_test(group, writes_before=20, writes_after=5)
            assert events.first("+switch-master") is not None
        order = [e.channel for e in events.events]
        firsts = [order.index(c) for c in ("+sdown", "+odown", "+switch-master")]
        assert firsts == sorted(firsts)
        switch = events.first("+switch-master")
        assert switch is not None
        assert switch.at > result.killed_at and str(result.new_port) in switch.text
        assert not events.listener.running


def test_proxied_group_routes_every_link_through_proxies() -> None:
    """proxied=True: replicas replicate via the primary's proxy and Sentinel
    monitors it there; every server is reachable at its proxy."""
    with ReplicatedGroup(2, sentinel=True, proxied=True) as group:
        assert group.primary is not None and group.sentinel is not None
        front = group.proxies[group.primary]
        assert group.sentinel.master_address() == (front.host, front.port)
        for replica in group.replicas:
            info = replica.client().info("replication")
            assert info["master_port"] == front.port
        assert group.current_primary() is group.primary
        assert len(running_proxies()) >= 3
    assert not any(p in running_proxies() for p in group.proxies.values())


@pytest.mark.parametrize("mode", ["async", "min-replicas", "wait"])
def test_split_brain_counts_what_each_mode_loses_and_costs(mode: str) -> None:
    """A partitioned primary acknowledges writes that are discarded when it
    rejoins; min-replicas-to-write refuses most of them, WAIT confirms none."""
    before = set(running_servers(include_default=False))
    result = split_brain_test(mode, partition_s=1.0, rate=100)
    assert result.promoted_s > 0 and result.attempted > 0
    assert result.lost <= result.acked
    if mode == "async":
        # Every write acknowledged alone is discarded, also after the heal.
        assert result.acked == result.attempted - result.dropped > 0
        assert result.lost == result.acked and result.acked_after_heal > 0
    elif mode == "min-replicas":
        assert result.refused > 0 and result.lost == result.acked
        assert result.acked_after_heal == 0  # no replica acks it any more
    else:
        assert result.confirmed == result.lost_confirmed == 0 and result.lost > 0
        assert result.latency_ms_p50 >= 100  # each write waited out its WAIT
    assert set(running_servers(include_default=False)) == before


def _bad(call: Any, error: type, words: str) -> None:
    before = {id(s) for s in running_servers(include_default=False)}
    with pytest.raises(error, match=words):
        call()
    assert {id(s) for s in running_servers(include_default=False)} == before


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: ReplicatedGroup(replicas=0), ValueError, "replicas=0"),
        (lambda: ReplicatedGroup(replicas=True), TypeError, "replicas=True"),
        (lambda: ReplicatedGroup(replicas=99), ValueError, "replicas=99"),
        (lambda: ReplicatedGroup(down_after_ms=5), ValueError, "down_after_ms=5"),
        (lambda: ReplicatedGroup(down_after_ms=1.5), TypeError, "down_after_ms=1.5"),  # type: ignore[arg-type]
        (
            lambda: ReplicatedGroup(failover_timeout_ms=10),
            ValueError,
            "failover_timeout_ms=10",
        ),
        (lambda: ReplicatedGroup(config="appendonly yes"), TypeError, "config="),  # type: ignore[arg-type]
        (lambda: ReplicatedGroup(sentinel="yes"), TypeError, "sentinel='yes'"),  # type: ignore[arg-type]
        (lambda: ReplicatedGroup(proxied=1), TypeError, "proxied=1"),  # type: ignore[arg-type]
        (lambda: split_brain_test("quorum"), ValueError, "mode='quorum'"),
        (lambda: split_brain_test(partition_s=0), ValueError, "partition_s=0"),
        (lambda: split_brain_test(partition_s=math.nan), ValueError, "partition_s=nan"),
        (lambda: split_brain_test(rate=math.inf), ValueError, "rate=inf"),
        (lambda: split_brain_test(rate=0), ValueError, "rate=0"),
        (lambda: split_brain_test(wait_ms=0), ValueError, "wait_ms=0"),
        (lambda: split_brain_test(wait_ms=True), TypeError, "wait_ms=True"),
        (lambda: split_brain_test(max_lag_s=-1), ValueError, "max_lag_s=-1"),
        (lambda: split_brain_test(timeout=-1), ValueError, "timeout=-1"),
        (lambda: failover_test("group"), TypeError, "group='group'"),  # type: ignore[arg-type]
        (lambda: SentinelEvents("sentinel"), TypeError, "sentinel='sentinel'"),  # type: ignore[arg-type]
    ],
)
def test_bad_harness_arguments_are_refused_before_anything_starts(
    call: Any, error: type, words: str
) -> None:
    """Each bad argument raises naming it and what is allowed; nothing starts."""
    _bad(call, error, words)


def test_bad_failover_arguments_need_a_sentinel_and_sane_counts() -> None:
    """failover_test needs a Sentinel; counts out of range are refused."""
    with ReplicatedGroup() as group:
        _bad(lambda: failover_test(group), ValueError, "sentinel=True")
    with ReplicatedGroup(sentinel=True) as group:
        _bad(
            lambda: failover_test(group, writes_before=0), ValueError, "writes_before=0"
        )
        _bad(
            lambda: failover_test(group, writes_before=5, freeze_last=6),
            ValueError,
            "freeze_last=6",
        )
        _bad(lambda: failover_test(group, timeout=math.nan), ValueError, "timeout=nan")
        assert group.primary is not None and group.primary.running  # nothing was killed


@pytest.mark.timeout(120)
def test_failover_that_never_comes_is_a_clear_error_within_its_timeout() -> None:
    """With the only replica frozen, no promotion comes: a clear error in time."""
    with (
        ReplicatedGroup(sentinel=True) as group,
        frozen(group.replicas[0]),
        pytest.raises(ExperimentTimeoutError, match="accepted writes within 4 s"),
    ):
        failover_test(group, writes_before=5, writes_after=1, timeout=4)
    assert group.primary is not None and group.sentinel is not None
    assert not group.primary.running and not group.sentinel.running


def test_nothing_is_left_running() -> None:
    """After the tests above, no proxy of this module is still running."""
    assert running_proxies() == []
