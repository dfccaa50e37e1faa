"""What a cluster pays for pub/sub: bus messages for PUBLISH vs SPUBLISH."""

from __future__ import annotations

from labkit.core.args import check_count, check_name
from labkit.core.wait import wait_until
from labkit.server import Cluster

__all__ = [
    "BUS_COUNTERS",
    "bus_delta",
    "bus_messages",
    "cluster_publish_cost",
    "total",
]

#: The ``CLUSTER INFO`` counters of pub/sub traffic on the cluster bus.
BUS_COUNTERS = (
    "cluster_stats_messages_publish_sent",
    "cluster_stats_messages_publish_received",
    "cluster_stats_messages_publishshard_sent",
    "cluster_stats_messages_publishshard_received",
)


def bus_messages(cluster: Cluster) -> dict[int, dict[str, int]]:
    """Pub/sub bus counters of every node, replicas too: ``{port: {counter: n}}``."""
    out = {}
    for node in cluster.nodes:
        client = node.client()
        try:
            text = client.execute_command("CLUSTER INFO")
        finally:
            client.close()
        if isinstance(text, dict):  # redis-py parses it into a dict
            fields = {str(k): str(v) for k, v in text.items()}
        else:
            lines = str(text).splitlines()
            fields = dict(line.split(":", 1) for line in lines if ":" in line)
        # A counter that is still 0 is left out of CLUSTER INFO.
        out[node.port] = {c: int(fields.get(c, 0)) for c in BUS_COUNTERS}
    return out


def _delta(
    before: dict[int, dict[str, int]], after: dict[int, dict[str, int]]
) -> dict[int, dict[str, int]]:
    return {
        port: {c: after[port][c] - before[port][c] for c in BUS_COUNTERS}
        for port in after
    }


def _settled(delta: dict[int, dict[str, int]]) -> bool:
    return all(
        total(delta, f"cluster_stats_messages_{kind}_sent")
        == total(delta, f"cluster_stats_messages_{kind}_received")
        for kind in ("publish", "publishshard")
    )


def bus_delta(
    cluster: Cluster, before: dict[int, dict[str, int]], timeout: float = 10.0
) -> dict[int, dict[str, int]]:
    """Every node's bus counters now, minus ``before`` (from :func:`bus_messages`).

    The sent counters move with the command, the received ones when the
    other nodes have read the bus: this waits (at most ``timeout`` seconds)
    until every message sent is counted as received too.
    """
    wait_until(lambda: _settled(_delta(before, bus_messages(cluster))), timeout)
    return _delta(before, bus_messages(cluster))


def cluster_publish_cost(
    cluster: Cluster, messages: int = 100, *, channel: str = "lab:news"
) -> dict[str, dict[int, dict[str, int]]]:
    """Bus messages each node sent and received for ``messages`` publishes.

    Sends ``messages`` classic ``PUBLISH`` es, then as many ``SPUBLISH`` es, to
    ``channel`` (no subscriber needed: the cost is paid either way), and
    returns the change of every node's bus counters for each:
    ``{"PUBLISH": {port: {counter: n}}, "SPUBLISH": {...}}``.
    """
    check_count("messages", messages, max=100_000)
    check_name("channel", channel)
    out: dict[str, dict[int, dict[str, int]]] = {}
    rc = cluster.client()
    try:
        for command in ("PUBLISH", "SPUBLISH"):
            before = bus_messages(cluster)
            pipe = rc.pipeline(transaction=False)
            for i in range(messages):
                # SPUBLISH is routed to the channel's shard; PUBLISH to any node
                pipe.execute_command(command, channel, f"m{i}")
            pipe.execute()

            # Sent counters move with the command; received ones when the
            # other nodes have read the bus: wait (bounded) until they match.
            def settled(before: dict[int, dict[str, int]] = before) -> bool:
                return _settled(_delta(before, bus_messages(cluster)))

            wait_until(settled, 10)
            out[command] = _delta(before, bus_messages(cluster))
    finally:
        rc.close()
    return out


def total(cost: dict[int, dict[str, int]], counter: str) -> int:
    """One counter summed over the nodes."""
    return sum(node[counter] for node in cost.values())
