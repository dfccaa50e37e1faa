"""Lab: a cluster client that follows ASK to a brand-new master.

Housed here to keep :mod:`labkit.lab.sharding.reshard` short; import them from there.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import PRIMARY, ClusterNode, RedisCluster

from labkit.server import Cluster
from labkit.sharding import cluster_nodes

__all__ = ["CHECKED_REDIS_PY", "ReshardSafeCluster", "add_known_master", "safe_client"]


#: redis-py versions :func:`add_known_master` was checked against.
CHECKED_REDIS_PY = ("8.1.0", "8.2.0")


def add_known_master(client: RedisCluster, host: str, port: int) -> bool:
    """Teach ``client`` a master it did not know; True if it was added.

    The one place labkit touches redis-py's private node table: it writes
    ``client.nodes_manager.nodes_cache[\"host:port\"] = ClusterNode(...)``,
    which is what ``get_node(host, port)`` and ``get_node(node_name=...)`` read.
    Checked against redis-py 8.1.0 and 8.2.0 (:data:`CHECKED_REDIS_PY`);
    ``tests/test_reshard.py`` fails loudly if that attribute or its key format
    changes.
    """
    cache = client.nodes_manager.nodes_cache
    if not isinstance(cache, dict):
        raise TypeError(
            f"redis-py {redis.__version__}: RedisCluster.nodes_manager.nodes_cache "
            f"is a {type(cache).__name__}, not the dict labkit was written for "
            f"(checked with redis-py {', '.join(CHECKED_REDIS_PY)})"
        )
    name = f"{host}:{port}"
    if name in cache:
        return False
    cache[name] = ClusterNode(host, port, server_type=PRIMARY)
    return True


class ReshardSafeCluster(RedisCluster):
    """A ``RedisCluster`` that can follow ``ASK`` to a master with no slots yet.

    redis-py builds its node table from ``CLUSTER SLOTS``, which lists only
    masters that own slots. The first redirect to a freshly added master is
    often an ``ASK`` (its first slots are still migrating), and stock redis-py
    8.1 then fails with ``AttributeError: 'NoneType' object has no attribute
    'redis_connection'`` (redis/redis-py issue #4015; fix proposed in PR
    #4214). This subclass, on a lookup by name that misses, reads
    ``CLUSTER NODES`` (which lists slotless masters too) and adds the usable
    masters it did not know (:func:`add_known_master`), then looks again. It
    adds only real cluster members. Commands sent one by one are covered;
    pipelines (and ``mget_nonatomic``, which uses one) look nodes up through
    their own code path and can still fail until the client has learnt the
    new master.
    """

    def get_node(
        self,
        host: str | None = None,
        port: int | None = None,
        node_name: str | None = None,
    ) -> Any:
        # redis-py 8.1 looks an ASK target up by name, 8.2 by host and port:
        # cover any lookup that names one node, whichever way it is named.
        node = super().get_node(host, port, node_name)
        if node is None and (node_name is not None or (host and port)):
            self._learn_masters()
            node = super().get_node(host, port, node_name)
        return node

    def _learn_masters(self) -> None:
        for info in cluster_nodes(self):
            if info.is_master and info.usable:
                add_known_master(self, info.host, info.port)


def safe_client(cluster: Cluster, **kwargs: Any) -> ReshardSafeCluster:
    """Like ``cluster.client()``, but a :class:`ReshardSafeCluster`."""
    kwargs.setdefault("decode_responses", True)
    kwargs.setdefault("socket_timeout", 5.0)
    first = cluster.seed()
    return ReshardSafeCluster(
        host=first.host, port=first.port, password=cluster.password, **kwargs
    )
