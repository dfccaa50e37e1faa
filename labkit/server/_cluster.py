"""A real Redis Cluster made of embedded servers, formed from Python."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from redis.cluster import RedisCluster

from labkit.core.clients import execute
from labkit.server._process import ConfigValue, Server, free_port
from labkit.server.errors import ClusterStateError
from labkit.sharding import SLOTS, cluster_nodes

__all__ = ["SLOTS", "Cluster"]  # SLOTS re-exported: defined in labkit.sharding


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Split the 16384 slots into ``masters`` contiguous, inclusive ranges."""
    bounds = [round(i * SLOTS / masters) for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


class Cluster:
    """A cluster-mode deployment of embedded servers on 127.0.0.1.

    Args:
        masters: Number of primaries; the 16384 slots are split evenly.
        replicas: Replicas per primary.
        config: Extra config directives applied to every node.
        node_timeout_ms: ``cluster-node-timeout``; small, so that failover
            experiments finish in seconds (the server default is 15000).
        ready_timeout: Seconds to wait for ``cluster_state:ok`` on every node.

    All nodes share one random password (``requirepass`` and ``masterauth``):
    a cluster client authenticates to every node with the same credentials.

    Example:
        >>> with Cluster(masters=3) as cluster:
        ...     rc = cluster.client()
        ...     rc.set("user:1", "ada")
        ...     rc.keyslot("user:1")
        10778
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        config: Mapping[str, ConfigValue] | None = None,
        node_timeout_ms: int = 2000,
        ready_timeout: float = 30.0,
    ) -> None:
        if not isinstance(masters, int) or not 1 <= masters <= 64:
            raise ValueError(f"masters={masters!r}: expected an int from 1 to 64")
        if not isinstance(replicas, int) or not 0 <= replicas <= 4:
            raise ValueError(f"replicas={replicas!r}: expected an int from 0 to 4")
        if node_timeout_ms < 100:
            raise ValueError(f"node_timeout_ms={node_timeout_ms!r}: must be >= 100")
        self.masters_count = masters
        self.replicas_count = replicas
        self.password = secrets.token_hex(16)
        self.ready_timeout = ready_timeout
        self._config = dict(config or {})
        self._node_timeout_ms = node_timeout_ms
        self.nodes: list[Server] = []
        self.replicas: list[Server] = []  # nodes attached with CLUSTER REPLICATE

    def _node_config(self) -> dict[str, ConfigValue]:
        return {
            **self._config,
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": self._node_timeout_ms,
            # An explicit bus port: the default (port + 10000) may be taken.
            "cluster-port": free_port(),
            "masterauth": self.password,
        }

    def new_node(self) -> Server:
        """Start one more empty cluster-mode node (not yet part of the cluster).

        Used to grow the cluster, e.g. before resharding: ``CLUSTER MEET`` it,
        then move slots to it.
        """
        node = Server(config=self._node_config(), password=self.password)
        node.start()
        self.nodes.append(node)
        return node

    def start(self) -> Cluster:
        """Start every node, assign all slots, join them and wait for state ok."""
        try:
            total = self.masters_count * (1 + self.replicas_count)
            for _ in range(total):
                self.new_node()
            masters = self.nodes[: self.masters_count]
            for node, (lo, hi) in zip(masters, slot_ranges(len(masters)), strict=True):
                execute(node.client(), "CLUSTER ADDSLOTSRANGE", lo, hi)
            for node in self.nodes[1:]:
                self.meet(node)
            self._wait(lambda: all(self._knows_all(n) for n in self.nodes), "join")
            for i, node in enumerate(self.nodes[self.masters_count :]):
                master = masters[i % self.masters_count]
                master_id = execute(master.client(), "CLUSTER MYID")
                execute(node.client(), "CLUSTER REPLICATE", master_id)
                self.replicas.append(node)
            self._wait(self.is_ok, "cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        return self

    def meet(self, node: Server) -> None:
        """Introduce ``node`` to the cluster (``CLUSTER MEET`` with its bus port)."""
        with self.seed().client() as first:
            first.execute_command(
                "CLUSTER MEET", node.host, node.port, node.config["cluster-port"]
            )

    def _knows_all(self, node: Server) -> bool:
        with node.client() as client:
            view = cluster_nodes(client)
        return len(view) == len(self.nodes) and not any(
            {"handshake", "noaddr"} & info.flags for info in view
        )

    def is_ok(self) -> bool:
        """True when the cluster is whole and healthy, as every node sees it.

        Every node reports ``cluster_state:ok`` and knows every other node,
        none flagged failed or still handshaking, and sees as many replicas
        as the cluster has; every node has its bus links to and from every
        other node (:func:`_meshed`); and every node that is a replica now (roles
        change in a failover) has its link to its master up.
        """
        for node in self.nodes:
            with node.client() as client:
                info = client.execute_command("CLUSTER INFO")
                view = cluster_nodes(client)
                if info.get("cluster_state") != "ok" or len(view) != len(self.nodes):
                    return False
                if not all(n.usable for n in view):
                    return False
                # Every node has heard of every replica as a replica (gossip
                # can lag behind CLUSTER REPLICATE: Redis 7.0 showed it).
                if sum(not n.is_master for n in view) != len(self.replicas):
                    return False
                me = next(n for n in view if n.myself)
                if not _meshed(client, {n.id for n in view if not n.myself}):
                    return False
                if not me.is_master:
                    link = client.info("replication").get("master_link_status")
                    if link != "up":
                        return False
        return True

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until :meth:`is_ok` (after a failover and restart, say).

        Raises:
            ClusterStateError: Not ok within ``timeout`` seconds (default:
                ``ready_timeout``).
        """
        self._wait(self.is_ok, "cluster_state:ok", timeout)

    def primaries(self) -> list[Server]:
        """The nodes that are primaries serving slots now, asked of a running node.

        Unlike :attr:`masters` (roles as labkit set them up), this follows
        failovers.
        """
        by_port = {n.port: n for n in self.nodes}
        view = self._view()
        return [
            by_port[n.port]
            for n in view
            if n.is_master and n.slots and n.usable and n.port in by_port
        ]

    def replicas_of(self, primary: Server) -> list[Server]:
        """The nodes replicating ``primary`` now."""
        by_port = {n.port: n for n in self.nodes}
        view = self._view()
        ids = [n.id for n in view if n.port == primary.port]
        return [
            by_port[n.port]
            for n in view
            if ids and n.master_id == ids[0] and n.port in by_port
        ]

    def _view(self) -> list[Any]:
        with self.seed().client(socket_timeout=5) as client:
            return cluster_nodes(client)

    def _wait(self, check: Any, what: str, timeout: float | None = None) -> None:
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n.port}\n{n.log_tail(5)}" for n in self.nodes)
                raise ClusterStateError(
                    f"cluster of {len(self.nodes)} nodes did not reach {what} within "
                    f"{timeout:g} s. Node logs:\n{logs}",
                    what=what,
                    nodes=[f"{n.host}:{n.port}" for n in self.nodes],
                    timeout=timeout,
                )
            time.sleep(0.05)

    # --- using it ---------------------------------------------------------
    @property
    def masters(self) -> list[Server]:
        """Nodes started as primaries or added with :meth:`new_node`.

        Roles as labkit set them up; after a failover ask the nodes themselves
        (``INFO replication``) who is primary now.
        """
        return [n for n in self.nodes if n not in self.replicas]

    def client(self, **kwargs: Any) -> RedisCluster:
        """A ``redis.cluster.RedisCluster`` that discovers every node.

        ``decode_responses=True`` and ``socket_timeout=5`` (seconds) unless
        given: a frozen node makes a call fail within seconds, not hang.
        """
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 5.0)
        first = self.seed()
        return RedisCluster(
            host=first.host, port=first.port, password=self.password, **kwargs
        )

    def seed(self) -> Server:
        """The first running node: where a new client starts discovering.

        Raises:
            ClusterStateError: No node is running.
        """
        for node in self.nodes:
            if node.running:
                return node
        raise ClusterStateError(
            "no node of the cluster is running",
            what="a running node",
            nodes=[f"{n.host}:{n.port}" for n in self.nodes],
            timeout=0.0,
        )

    def stop(self) -> None:
        """Stop and clean up every node."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _meshed(client: Any, peers: set[str]) -> bool:
    """True if the node has a bus link to and one from each of ``peers``.

    ``cluster_state:ok`` can come before the bus is fully meshed. A classic
    ``PUBLISH`` is broadcast over the bus, fire and forget: a node with no
    link to a peer yet, or a peer that has not yet tied the incoming link to
    this node, drops the message (seen right after start, about one cluster
    in 25 on a loaded machine: a subscriber got 2 of 3 messages).
    """
    seen = set()
    for link in client.execute_command("CLUSTER LINKS"):
        pairs = (
            link.items()
            if isinstance(link, dict)
            else zip(link[::2], link[1::2], strict=True)
        )
        fields = {_text(k): v for k, v in pairs}
        seen.add((_text(fields["direction"]), _text(fields["node"])))
    return all(("to", p) in seen and ("from", p) in seen for p in peers)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
