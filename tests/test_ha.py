"""labkit.lab.persistence.ha: replication, WAIT and Sentinel failover, real servers."""

from __future__ import annotations

import time

import pytest

from labkit.lab.persistence.ha import ReplicatedGroup, failover_test, frozen


def test_sentinel_failover_client_writes_and_reads_within_bounded_time() -> None:
    """After the primary is killed, a Sentinel client writes and reads within 15 s."""
    with ReplicatedGroup(sentinel=True) as group:
        replica_port = group.replicas[0].port
        start = time.monotonic()
        result = failover_test(group, writes_before=100, writes_after=20, timeout=15)
        assert time.monotonic() - start < 15
        assert result.new_port == replica_port != result.old_port
        # The replica had every write but the last one or two (timing); only
        # those can be lost, so the bound is exact, "lost == 0" only likely.
        assert result.acked == 120 and result.lost <= result.behind
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
        primary, replica = group.primary.client(), group.replicas[0].client()
        primary.set("a", "1")
        assert primary.wait(1, 2000) == 1 and replica.get("a") == "1"
        with frozen(group.replicas[0]):
            primary.set("b", "2")
            assert primary.wait(1, 200) == 0  # timed out: no replica acked
            assert primary.get("b") == "2"  # ... and the write stands
        assert primary.wait(1, 5000) == 1 and replica.get("b") == "2"


def test_bad_group_arguments() -> None:
    """Nonsense sizes are refused; failover_test needs a Sentinel."""
    with pytest.raises(ValueError, match="replicas=0"):
        ReplicatedGroup(replicas=0)
    with ReplicatedGroup() as group, pytest.raises(ValueError, match="sentinel=True"):
        failover_test(group)
