"""Lab: cluster clients under live resharding: a redirect-safe client, test traffic.

Housed here to keep :mod:`labkit.lab.sharding.reshard` short; import them from there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, NamedTuple

from redis.cluster import PRIMARY, ClusterNode, RedisCluster

from labkit.server import Cluster

__all__ = ["LiveTraffic", "ReshardSafeCluster", "TrafficReport", "safe_client"]


class ReshardSafeCluster(RedisCluster):
    """A ``RedisCluster`` that can follow ``ASK`` to a master with no slots yet.

    redis-py builds its node table from ``CLUSTER SLOTS``, which lists only
    masters that own slots. The first redirect to a freshly added master is
    often an ``ASK`` (its first slots are still migrating), and stock redis-py
    8.1 then fails with ``AttributeError: 'NoneType' object has no attribute
    'redis_connection'`` (redis/redis-py issue #4015; fix proposed in PR
    #4214). This subclass, on a lookup by name that misses, reads
    ``CLUSTER NODES`` (which lists slotless masters too) and adds the masters
    it did not know, then looks again. It adds only real cluster members.
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
        known = self.nodes_manager.nodes_cache
        source = self.get_redis_connection(self.get_default_node())
        for addr, info in source.execute_command("CLUSTER NODES").items():
            flags = set(info["flags"].split(","))
            usable = not flags & {"handshake", "noaddr", "fail"}
            if "master" in flags and usable and addr not in known:
                host, port = addr.rsplit(":", 1)
                known[addr] = ClusterNode(host, int(port), server_type=PRIMARY)


def safe_client(cluster: Cluster, **kwargs: Any) -> ReshardSafeCluster:
    """Like ``cluster.client()``, but a :class:`ReshardSafeCluster`."""
    kwargs.setdefault("decode_responses", True)
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
