"""Lab: a cluster primary killed under traffic: how long its slots are down, losses.

Two writers keep writing to keys of the victim's slots, each through a plain
client of whichever node owns that slot now (found again with
``CLUSTER NODES`` after every error):

- the *plain* writer counts a write as done when the primary acknowledges it;
- the *WAIT* writer follows each write with ``WAIT 1 <ms>`` on the same
  connection and counts it as confirmed only if a replica has it.

Then the victim's replica is frozen for a moment (``SIGSTOP``: a replica that
lags behind, as a busy or far-away one does) while the writers go on, the
victim is killed (``SIGKILL``), and the replica is let go. The cluster
promotes it once the other masters agree the victim is down, which takes about
``cluster-node-timeout`` plus an election. Afterwards every acknowledged and
every confirmed write is read back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import NamedTuple

import redis

from labkit.core.args import check_count, check_int, check_seconds
from labkit.core.wait import wait_until
from labkit.lab.sharding.migration import pick_tags
from labkit.server import Cluster, Server, no_retry
from labkit.server.errors import ClusterStateError
from labkit.sharding import cluster_nodes, key_slot, tagged

__all__ = ["FailoverRun", "Writer", "failover_under_traffic", "set_node_timeout"]


class FailoverRun(NamedTuple):
    """One primary killed under traffic.

    Attributes:
        node_timeout_ms: ``cluster-node-timeout`` during the run.
        promoted_after: Seconds from the kill until the replica reported
            itself master.
        first_write_after: Seconds from the kill until the plain writer sent
            its first write that was then acknowledged.
        acknowledged: Writes the plain writer had acknowledged (all of them).
        lost: Of those, missing after the failover.
        during_lag: Plain writes acknowledged while the replica was frozen.
        confirmed: Writes the WAIT writer had confirmed on a replica.
        confirmed_lost: Of those, missing after the failover.
        unconfirmed: WAIT-writer writes acknowledged by the primary but
            never confirmed (the writer knows they may be gone).
        errors: Failed write attempts while the slots were down (both writers).
    """

    node_timeout_ms: int
    promoted_after: float
    first_write_after: float
    acknowledged: int
    lost: int
    during_lag: int
    confirmed: int
    confirmed_lost: int
    unconfirmed: int
    errors: int


def set_node_timeout(cluster: Cluster, ms: int) -> None:
    """``CONFIG SET cluster-node-timeout`` on every running node."""
    check_int("ms", ms, min=100, max=600_000)
    for node in cluster.nodes:
        if node.running:
            with node.client(socket_timeout=5) as client:
                client.config_set("cluster-node-timeout", ms)


class Writer(threading.Thread):
    """Writes ``{<tag>}:<i>`` = ``value`` for i = 0, 1, ... to the slot's owner.

    Args:
        cluster: Where to look the owner up.
        tag: Hash tag of the keys (one slot).
        wait_ms: If set, ``WAIT 1 wait_ms`` after each write; a write is
            confirmed when it returns 1.
        value_size: Bytes per value.
    """

    def __init__(
        self, cluster: Cluster, tag: str, *, wait_ms: int | None, value_size: int
    ) -> None:
        super().__init__(daemon=True, name=f"writer-{tag}")
        self.cluster, self.tag, self.wait_ms = cluster, tag, wait_ms
        self.value = "v" * value_size
        self.slot = key_slot(tagged(tag, 0))
        self.acked: list[tuple[int, float]] = []  # (i, time sent), acknowledged
        self.confirmed: list[int] = []
        self.errors = 0
        self._halt = threading.Event()
        self._client: redis.Redis | None = None

    def _owner(self) -> redis.Redis | None:
        by_port = {n.port: n for n in self.cluster.nodes}
        for node in self.cluster.nodes:
            if not node.running:
                continue
            try:
                with node.client(socket_timeout=1, retry=no_retry()) as probe:
                    view = cluster_nodes(probe)
            except redis.RedisError:
                continue
            for info in view:
                owns = any(lo <= self.slot <= hi for lo, hi in info.slots)
                if owns and info.is_master and info.usable and info.port in by_port:
                    return by_port[info.port].client(
                        socket_timeout=1,
                        single_connection_client=True,
                        retry=no_retry(),  # the window measured is the cluster's
                    )
            return None
        return None

    def run(self) -> None:
        i = 0
        while not self._halt.is_set():
            try:
                if self._client is None:
                    # Connects at once (single connection): may be refused.
                    self._client = self._owner()
                    if self._client is None:
                        time.sleep(0.02)
                        continue
                sent = time.monotonic()
                self._client.set(tagged(self.tag, i), self.value)
                self.acked.append((i, sent))
                if self.wait_ms is not None:
                    replicas = self._client.execute_command("WAIT", 1, self.wait_ms)
                    if int(replicas) >= 1:
                        self.confirmed.append(i)
                i += 1
            except redis.RedisError:
                self.errors += 1
                if self._client is not None:
                    self._client.close()
                self._client = None
                time.sleep(0.02)
        if self._client is not None:
            self._client.close()

    def stop(self) -> None:
        """Stop and join (bounded)."""
        self._halt.set()
        self.join(timeout=10)


def _signal(server: Server, sig: int) -> None:
    if server.pid is not None:
        os.kill(server.pid, sig)


def _missing(cluster: Cluster, tag: str, ids: list[int]) -> int:
    rc = cluster.client()
    try:
        keys = [tagged(tag, i) for i in ids]
        found = 0
        for j in range(0, len(keys), 500):
            found += sum(v is not None for v in rc.mget_nonatomic(keys[j : j + 500]))
        return len(keys) - found
    finally:
        rc.close()


def failover_under_traffic(
    cluster: Cluster,
    victim: Server,
    *,
    node_timeout_ms: int = 1000,
    lag: float = 0.5,
    value_size: int = 20_000,
    wait_ms: int = 50,
    warmup: int = 20,
    timeout: float = 60.0,
) -> FailoverRun:
    """Kill ``victim`` (a primary with a replica) under traffic; measure and restore.

    Args:
        cluster: A cluster with replicas (``Cluster(masters=3, replicas=1)``:
            a failover needs a majority of masters still up).
        victim: The primary to kill.
        node_timeout_ms: ``cluster-node-timeout`` set on every node first.
        lag: Seconds the replica is frozen before the kill while the writers
            go on.
        value_size: Bytes per write: the more bytes written during the lag,
            the more of them are still in the primary's buffers when it dies.
        wait_ms: The WAIT writer's ``WAIT 1`` timeout.
        warmup: Writes each writer gets acknowledged (and, for the WAIT
            writer, confirmed) before the replica is frozen, so that "no
            confirmed write lost" rests on more than a handful of writes.
        timeout: Bound on the whole failover and on the recovery.

    The victim is restarted afterwards (it rejoins as a replica of the
    promoted node) and the call waits for the cluster to be whole again.

    Raises:
        ClusterStateError: No promotion, no write or no recovery in time.
    """
    check_seconds("lag", lag, max=60)
    check_count("value_size", value_size, max=10_000_000)
    check_int("wait_ms", wait_ms, min=1, max=60_000)
    check_count("warmup", warmup, max=100_000)
    replicas = cluster.replicas_of(victim)
    if not replicas:
        raise ValueError(f"victim={victim!r}: has no replica to take over")
    replica = replicas[0]
    set_node_timeout(cluster, node_timeout_ms)
    with victim.client() as client:
        mine = [s for n in cluster_nodes(client) if n.myself for s in n.slot_list()]
    tag_plain, tag_wait = pick_tags(mine, 2, prefix=f"fo{victim.port}-")
    plain = Writer(cluster, tag_plain, wait_ms=None, value_size=value_size)
    waiter = Writer(cluster, tag_wait, wait_ms=wait_ms, value_size=value_size)
    plain.start()
    waiter.start()
    try:
        # Warm up until both writers have a sample worth checking afterwards:
        # the WAIT writer's confirmations are what the run is about.
        def warmed_up() -> bool:
            return len(plain.acked) >= warmup and len(waiter.confirmed) >= warmup

        if not wait_until(warmed_up, timeout=timeout):
            raise ClusterStateError(
                "the writers made no progress before the kill",
                what="writes",
                nodes=[f"{victim.host}:{victim.port}"],
                timeout=timeout,
            )
        _signal(replica, signal.SIGSTOP)
        frozen_at = time.monotonic()
        time.sleep(lag)
        victim.kill()  # returns once the process is gone: no reply after this
        killed_at = time.monotonic()  # (taken before it, a reply in flight
        _signal(replica, signal.SIGCONT)  # counted as a write 0.2 ms "after")

        def promoted() -> bool:
            with replica.client(socket_timeout=1) as c:
                return bool(c.info("replication")["role"] == "master")

        if not wait_until(promoted, timeout=timeout, interval=0.005):
            raise ClusterStateError(
                f"replica {replica.port} was not promoted within {timeout:g} s",
                what="replica promoted",
                nodes=[f"{replica.host}:{replica.port}"],
                timeout=timeout,
            )
        promoted_after = time.monotonic() - killed_at
        if not wait_until(lambda: plain.acked[-1][1] > killed_at, timeout=timeout):
            raise ClusterStateError(
                f"no write succeeded within {timeout:g} s of the kill",
                what="a write after failover",
                nodes=[f"{replica.host}:{replica.port}"],
                timeout=timeout,
            )
        first = next(t for _, t in plain.acked if t > killed_at) - killed_at
    finally:
        plain.stop()
        waiter.stop()
        _signal(replica, signal.SIGCONT)
    acked = [i for i, _ in plain.acked]
    unconfirmed = len(waiter.acked) - len(waiter.confirmed)
    run = FailoverRun(
        node_timeout_ms=node_timeout_ms,
        promoted_after=promoted_after,
        first_write_after=first,
        acknowledged=len(acked),
        lost=_missing(cluster, tag_plain, acked),
        during_lag=sum(frozen_at <= t < killed_at for _, t in plain.acked),
        confirmed=len(waiter.confirmed),
        confirmed_lost=_missing(cluster, tag_wait, waiter.confirmed),
        unconfirmed=unconfirmed,
        errors=plain.errors + waiter.errors,
    )
    victim.restart()
    cluster.wait_ok(timeout)
    return run
