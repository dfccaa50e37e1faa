"""Lab: who is in a cluster and owns what; adding an empty master.

Housed here to keep :mod:`labkit.lab.sharding.reshard` short; import them from there.
"""

from __future__ import annotations

import time

from labkit.server import Cluster, Server
from labkit.server.errors import ClusterStateError
from labkit.sharding import cluster_nodes

__all__ = ["add_master", "master_labels", "masters_by_id", "node_id", "slots_of"]


def node_id(server: Server) -> str:
    """The 40-character cluster node id of ``server``."""
    with server.client() as client:
        return str(client.execute_command("CLUSTER MYID"))


def masters_by_id(cluster: Cluster) -> dict[str, Server]:
    """``{node id: Server}`` for every node that is a master and serves slots."""
    by_port = {n.port: n for n in cluster.nodes}
    with cluster.seed().client() as client:
        view = cluster_nodes(client)
    return {
        info.id: by_port[info.port]
        for info in view
        if info.is_master and info.slots and info.port in by_port
    }


def master_labels(cluster: Cluster) -> dict[str, str]:
    """``{node id: "master <i>"}`` for the masters serving slots, by lowest slot.

    ``master 0`` owns slot 0, ``master 1`` the next range...: the same name
    for the same node in every table and plot of chapter 04, whatever order
    ``CLUSTER NODES`` lists the nodes in.
    """
    owners = {nid: slots for nid, slots in slots_of(cluster).items() if slots}
    order = sorted(owners, key=lambda nid: owners[nid][0])
    return {nid: f"master {i}" for i, nid in enumerate(order)}


def slots_of(cluster: Cluster) -> dict[str, list[int]]:
    """``{node id: sorted slots}`` as the first node sees them."""
    with cluster.seed().client() as client:
        return {info.id: info.slot_list() for info in cluster_nodes(client)}


def add_master(cluster: Cluster, *, timeout: float = 10.0) -> Server:
    """Start an empty master, ``CLUSTER MEET`` it, wait until every node knows it.

    Also waits for the new node's own ``cluster_state:ok`` (it has learnt who
    owns every slot): before that, a ``MIGRATE`` to it fails with
    ``CLUSTERDOWN``.

    Returns:
        The new node (it owns no slots yet; :func:`reshard` gives it some).

    Raises:
        ClusterStateError: Some node did not learn of it within ``timeout``
            seconds.
    """
    node = cluster.new_node()
    cluster.meet(node)
    new_id = node_id(node)
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for member in cluster.nodes:
            with member.client() as client:
                view = cluster_nodes(client)
            if not any(v.id == new_id and v.usable for v in view):
                pending.append(member.port)
        with node.client() as client:
            state = client.execute_command("CLUSTER INFO")["cluster_state"]
        if not pending and state == "ok":
            return node
        if time.monotonic() > deadline:
            raise ClusterStateError(
                f"new node {node.port}: not known to nodes {pending} or its "
                f"cluster_state={state!r} after {timeout:g} s",
                what="new master known to every node",
                nodes=[f"{n.host}:{n.port}" for n in cluster.nodes],
                timeout=timeout,
            )
        time.sleep(0.05)
