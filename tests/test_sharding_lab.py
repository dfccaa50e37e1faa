"""Chapter 04's lab helpers: master names and colours, server work, the hand-off."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from labkit.core.clients import supports
from labkit.core.wait import wait_until
from labkit.lab.plots.sharding import MASTER_COLORS, master_color, master_order
from labkit.lab.sharding import reshard
from labkit.lab.sharding.handoff import WriteProbe, handoff_times
from labkit.lab.sharding.migration import pick_tags
from labkit.lab.sharding.scale import server_work
from labkit.server import Cluster
from labkit.sharding import tagged


def test_master_order_and_colours() -> None:
    """Masters come first in their fixed order, each with its fixed colour."""
    names = ["new master", "master 2", "other", "master 0", "master 1"]
    assert master_order(names) == [
        "master 0",
        "master 1",
        "master 2",
        "new master",
        "other",
    ]
    assert master_color("master 1") == MASTER_COLORS["master 1"]
    assert master_color("redis-c", 2) == "C2"


@pytest.mark.embedded
def test_master_labels_and_server_work() -> None:
    """master 0 owns slot 0, and each master counts the SETs it ran."""
    with Cluster(masters=3) as cluster:
        labels = reshard.master_labels(cluster)
        owners = reshard.slots_of(cluster)
        assert sorted(labels.values()) == ["master 0", "master 1", "master 2"]
        first = next(nid for nid, name in labels.items() if name == "master 0")
        assert owners[first][0] == 0
        before = server_work(cluster)
        rc = cluster.client()
        try:
            for i in range(300):
                rc.set(f"k:{i}", "x")
        finally:
            rc.close()
        after = server_work(cluster)
        assert sum(after[m].sets - before[m].sets for m in after) == 300
        assert all(after[m].cpu_seconds >= before[m].cpu_seconds for m in after)


@pytest.mark.embedded
def test_handoff_times_follow_an_atomic_migration() -> None:
    """The logged steps of one MIGRATESLOTS come in order; the probe keeps going."""
    with Cluster(masters=2) as cluster:
        seed = cluster.seed().client()
        try:
            if not supports(seed, "atomic-slot-migration"):
                pytest.skip("no CLUSTER MIGRATESLOTS (Valkey 9.0+)")
        finally:
            seed.close()
        new = reshard.add_master(cluster)
        source = next(iter(reshard.masters_by_id(cluster).values()))
        slots = reshard.slots_of(cluster)[reshard.node_id(source)]
        keep, moving = slots[0], slots[-8:]
        key = tagged(pick_tags([keep], 1)[0], "probe")  # a slot that stays
        with source.client() as client, WriteProbe(source, key) as probe:
            client.execute_command(
                "CLUSTER MIGRATESLOTS", "SLOTSRANGE", moving[0], moving[-1],
                "NODE", reshard.node_id(new),
            )  # fmt: skip

            def job() -> dict[str, Any]:
                jobs = client.execute_command("CLUSTER GETSLOTMIGRATIONS")
                last: dict[str, Any] = jobs[-1]
                return last

            assert wait_until(lambda: job()["state"] == "success", timeout=60)
            name = job()["name"]
        h = handoff_times(source, new, name)
        steps = list(h)
        assert all(a <= b + 0.002 for a, b in pairwise(steps))
        assert h.pause >= 0 and probe.errors == 0
        assert {c for _, _, c in probe.rows} == {"SET", "GET"}
