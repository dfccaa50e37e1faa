"""Route replication and Sentinel through proxies (see the package docstring)."""

from __future__ import annotations

from labkit.lab.proxy._proxy import Proxy
from labkit.server import Sentinel, Server

__all__ = ["announce_via", "monitor_via", "replicate_via"]


def announce_via(server: Server, proxy: Proxy) -> None:
    """Make ``server`` tell others to reach it through ``proxy``.

    Sets ``replica-announce-ip`` / ``replica-announce-port`` (``CONFIG SET``)
    to the proxy's address. A replica sends them to its primary in the
    replication handshake, so call this before :func:`replicate_via`; the
    primary lists the replica under that address in ``INFO replication``,
    which is where Sentinel learns it. Set it on the primary too: once
    demoted by a failover, it is listed the same way.
    """
    with server.client() as r:
        r.config_set("replica-announce-ip", proxy.host)
        r.config_set("replica-announce-port", proxy.port)


def replicate_via(replica: Server, proxy: Proxy) -> None:
    """``REPLICAOF`` the proxy: the replica's link to its primary crosses it.

    ``replica`` needs ``masterauth`` (see ``labkit.server.replica_config``);
    ``proxy`` forwards to the primary.
    """
    with replica.client() as r:
        r.replicaof(proxy.host, proxy.port)


def monitor_via(sentinel: Sentinel, proxy: Proxy) -> None:
    """Re-point ``sentinel`` at its primary through ``proxy`` (a fresh start).

    ``SENTINEL REMOVE`` then ``SENTINEL MONITOR`` the proxy's address, with
    the Sentinel's own quorum, timeouts and the primary's password. What it
    knew is forgotten; replicas are rediscovered from ``INFO replication``
    within about 10 s (at once for replicas listed there already). A
    restarted Sentinel goes back to monitoring the primary directly.
    """
    name = sentinel.name
    with sentinel.client() as s:
        s.execute_command("SENTINEL", "REMOVE", name)
        s.execute_command(
            "SENTINEL", "MONITOR", name, proxy.host, proxy.port, sentinel.quorum
        )
        s.execute_command(
            "SENTINEL", "SET", name,
            "auth-pass", sentinel.primary.password,
            "down-after-milliseconds", sentinel.down_after_ms,
            "failover-timeout", sentinel.failover_timeout_ms,
        )  # fmt: skip
