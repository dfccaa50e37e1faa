"""Lab: hot spots in a cluster, measured per slot with ``CLUSTER SLOT-STATS``.

A hash tag pins every key that carries it to one slot, so one master. With
popularity skewed the way real traffic is (a Zipf distribution: a few users
get most requests), per-user tags already load some slots far more than
others; a tag shared by too many keys puts everything on one master. Valkey
8.0+ counts keys, CPU time and network bytes per slot (``CLUSTER
SLOT-STATS``; CPU and network need ``cluster-slot-stats-enabled yes``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from redis.cluster import RedisCluster

from labkit.core.args import check_count, check_number
from labkit.core.clients import supports
from labkit.lab.sharding._topology import master_labels, masters_by_id
from labkit.server import Cluster

__all__ = ["HotSpots", "drive", "enable_slot_stats", "hot_spots", "zipf_counts"]


class HotSpots(NamedTuple):
    """Per-master totals from ``CLUSTER SLOT-STATS`` after a run.

    Attributes:
        keys: ``{master: keys}``.
        cpu_usec: ``{master: microseconds of command CPU}``.
        net_in: ``{master: bytes received from clients}``.
        hottest_slot: The slot with the most CPU time.
        hottest_slot_cpu_share: Its share of all CPU time (0..1).
        busiest_cpu_share: The busiest master's share of all CPU time.
        slots_used: Slots holding at least one key.
    """

    keys: dict[str, int]
    cpu_usec: dict[str, int]
    net_in: dict[str, int]
    hottest_slot: int
    hottest_slot_cpu_share: float
    busiest_cpu_share: float
    slots_used: int


def zipf_counts(n: int, requests: int, *, s: float = 1.1, seed: int = 0) -> np.ndarray:
    """Requests per item for ``requests`` draws over ``n`` items, Zipf-distributed.

    Item ``i`` (0-based rank) is drawn with probability proportional to
    ``1 / (i + 1) ** s``; ``s`` near 1 is the classic web-traffic skew.
    """
    check_count("n", n, max=10_000_000)
    check_count("requests", requests, max=100_000_000)
    check_number("s", s, min=0.0, max=5.0)
    weights = 1.0 / np.arange(1, n + 1) ** s
    rng = np.random.default_rng(seed)
    return rng.multinomial(requests, weights / weights.sum())


def enable_slot_stats(cluster: Cluster) -> None:
    """Turn on per-slot CPU and network counters on every node, reset them."""
    for node in cluster.nodes:
        with node.client() as client:
            client.config_set("cluster-slot-stats-enabled", "yes")
            client.config_resetstat()


def drive(
    client: RedisCluster,
    counts: Sequence[int] | np.ndarray,
    key: Callable[[int], str],
    *,
    batch: int = 200,
) -> int:
    """Send ``counts[i]`` ``INCR``s to ``key(i)`` for every item, in pipelines.

    Requests are interleaved (popular items come back often) rather than
    sent item by item. Returns the number of requests sent.
    """
    check_count("batch", batch, max=100_000)
    order = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(1).shuffle(order)
    for i in range(0, len(order), batch):
        pipe = client.pipeline(transaction=False)
        for item in order[i : i + batch]:
            pipe.incr(key(int(item)))
        pipe.execute()
    return len(order)


def hot_spots(cluster: Cluster, names: dict[str, str] | None = None) -> HotSpots:
    """Per-master totals of ``CLUSTER SLOT-STATS`` (``names``: ``{node id: label}``).

    By default the masters are named by :func:`master_labels` (``master 0``
    owns slot 0), as in every plot of chapter 04.

    Raises:
        ValueError: The servers have no ``CLUSTER SLOT-STATS`` (Valkey 8.0+).
    """
    by_id = masters_by_id(cluster)
    names = names or master_labels(cluster)
    keys = dict.fromkeys(names.values(), 0)
    cpu = dict.fromkeys(names.values(), 0)
    net = dict.fromkeys(names.values(), 0)
    stats = {}
    for nid, node in by_id.items():
        with node.client() as client:
            if not supports(client, "cluster-slot-stats"):
                raise ValueError("these servers have no CLUSTER SLOT-STATS (Valkey 8+)")
            rows = client.execute_command("CLUSTER SLOT-STATS", "SLOTSRANGE", 0, 16383)
        label = names.get(nid, nid[:8])
        for slot, st in rows:
            stats[int(slot)] = st
            keys[label] = keys.get(label, 0) + int(st["key-count"])
            cpu[label] = cpu.get(label, 0) + int(st["cpu-usec"])
            net[label] = net.get(label, 0) + int(st["network-bytes-in"])
    total_cpu = max(sum(cpu.values()), 1)
    hottest = max(stats, key=lambda s: int(stats[s]["cpu-usec"]))
    return HotSpots(
        keys=keys,
        cpu_usec=cpu,
        net_in=net,
        hottest_slot=hottest,
        hottest_slot_cpu_share=int(stats[hottest]["cpu-usec"]) / total_cpu,
        busiest_cpu_share=max(cpu.values()) / total_cpu,
        slots_used=sum(1 for st in stats.values() if int(st["key-count"]) > 0),
    )
