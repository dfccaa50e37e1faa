"""Lab: cluster clients under live resharding: a redirect-safe client, test traffic.

Housed here to keep :mod:`labkit.lab.sharding.reshard` short; import them from there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, NamedTuple

import redis
from redis.cluster import PRIMARY, ClusterNode, RedisCluster

from labkit.server import Cluster
from labkit.sharding import cluster_nodes

__all__ = [
    "CHECKED_REDIS_PY",
    "LiveTraffic",
    "ReshardSafeCluster",
    "TrafficReport",
    "add_known_master",
    "safe_client",
]


#: redis-py versions :func:`add_known_master` was checked against.
CHECKED_REDIS_PY = ("8.1.0",)


def add_known_master(client: RedisCluster, host: str, port: int) -> bool:
    """Teach ``client`` a master it did not know; True if it was added.

    The one place labkit touches redis-py's private node table: it writes
    ``client.nodes_manager.nodes_cache[\"host:port\"] = ClusterNode(...)``,
    which is what ``get_node(node_name=...)`` reads. Checked against redis-py
    8.1.0 (:data:`CHECKED_REDIS_PY`); ``tests/test_reshard.py`` fails loudly
    if that attribute or its key format changes.
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
        node = super().get_node(host, port, node_name)
        if node is None and node_name is not None:
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
    first = cluster.nodes[0]
    return ReshardSafeCluster(
        host=first.host, port=first.port, password=cluster.password, **kwargs
    )


class TrafficReport(NamedTuple):
    """What a :class:`LiveTraffic` client did.

    Attributes:
        writes, reads: Operations that succeeded.
        failed: Operations that raised (after the client's own redirects and
            retries), plus reads that returned a wrong value.
        errors: ``{exception type name: count}``.
        acknowledged: ``{key: value}`` of every write the server acknowledged.
    """

    writes: int
    reads: int
    failed: int
    errors: dict[str, int]
    acknowledged: dict[str, str]


class LiveTraffic:
    """A thread that keeps writing and reading through a cluster client.

    Each step writes ``<prefix>:<i % keyspace>`` = ``i`` and reads back an
    earlier acknowledged key, comparing the value. Use it as a context
    manager around a reshard, then check :meth:`lost` for keys that did not
    survive.

    Args:
        client: A ``RedisCluster`` (``decode_responses=True``) used only here.
        prefix: Key prefix.
        keyspace: Distinct keys written, cycling.
        max_ops: Upper bound on write+read pairs.
        max_seconds: Upper bound on running time.
    """

    def __init__(
        self,
        client: RedisCluster,
        *,
        prefix: str = "lab:live",
        keyspace: int = 2000,
        max_ops: int = 100_000,
        max_seconds: float = 60.0,
    ) -> None:
        if keyspace < 1 or max_ops < 1 or max_seconds <= 0:
            raise ValueError("keyspace, max_ops and max_seconds must be positive")
        self.client, self.prefix, self.keyspace = client, prefix, keyspace
        self.max_ops, self.max_seconds = max_ops, max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._errors: Counter[str] = Counter()
        self._acked: dict[str, str] = {}
        self._writes = self._reads = self._wrong = 0

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for i in range(self.max_ops):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            key = f"{self.prefix}:{i % self.keyspace}"
            try:
                self.client.set(key, str(i))
                self._acked[key] = str(i)
                self._writes += 1
            except Exception as exc:  # counted, not hidden: the report shows it
                self._errors[type(exc).__name__] += 1
            probe = f"{self.prefix}:{(i * 7919) % min(i + 1, self.keyspace)}"
            try:
                value = self.client.get(probe)
                self._reads += 1
                if value != self._acked.get(probe):
                    self._wrong += 1
            except Exception as exc:
                self._errors[type(exc).__name__] += 1

    def start(self) -> LiveTraffic:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self) -> TrafficReport:
        """Stop the thread and report."""
        self._stop.set()
        self._thread.join()
        return self.report()

    def report(self) -> TrafficReport:
        """Counts so far."""
        errors = dict(self._errors)
        if self._wrong:
            errors["wrong value read"] = self._wrong
        failed = sum(self._errors.values()) + self._wrong
        return TrafficReport(
            self._writes, self._reads, failed, errors, dict(self._acked)
        )

    def lost(self, client: RedisCluster) -> list[str]:
        """Acknowledged keys that now read back missing or different."""
        acked = self.report().acknowledged
        keys = list(acked)
        values = [client.get(k) for k in keys]
        return [k for k, v in zip(keys, values, strict=True) if v != acked[k]]

    def __enter__(self) -> LiveTraffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
