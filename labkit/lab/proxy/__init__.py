"""A fault-injecting TCP proxy: latency, bandwidth caps, partitions, resets.

Loopback never misbehaves, and several lessons need a network that does:
pipelining pays once a round trip costs milliseconds, a Sentinel failover
loses acknowledged writes when the old primary keeps taking them on the
wrong side of a partition, and a slow or cut-off subscriber is where pub/sub
drops messages. :class:`Proxy` sits between a client (or a replica, or a
Sentinel) and a server and makes its link slow, narrow, silent or broken on
demand; :class:`Partition` cuts several proxies at once.

Why our own: Toxiproxy, the usual tool, is a Go server that no package
registry the lab installs from (PyPI, Debian, npm) provides, and no
maintained Python package does this. This one is a selectors loop in one
thread per proxy, in the lab layer: applications never import it.

What the knobs mean. "Up" is client to server, "down" server to client.
Latency is one-way and per chunk, with order kept, so it does not limit
throughput: ``set_rtt(0.2)`` (= ``set_latency(0.1)`` both ways) adds 0.2 ms
to every request/reply round trip while a pipeline still streams. Each
delivery is late by some tens of microseconds more (a thread waking up;
more on a loaded machine), and the proxy itself adds a hop: measure the
round trip you get (median PING through the proxy minus direct) rather
than quoting the knob. A black hole delivers nothing and loses nothing
(held bytes flow on after ``heal()``); a bandwidth cap or a black hole
fills the proxy's small buffer and then the sender's, as a real link does.

Routing a replica group through proxies. Put one proxy in front of each data
server (its *ingress*): every other node reaches that server through it, so
cutting it partitions that server from them. Three settings make Redis and
Sentinel use the proxies' addresses instead of the servers' own ports:

1. a replica replicates from its primary's proxy (``REPLICAOF``;
   :func:`replicate_via`);
2. each data server announces its own proxy (``replica-announce-ip`` /
   ``replica-announce-port``; :func:`announce_via`) so that the primary
   lists its replicas at their proxies in ``INFO replication``, which is how
   Sentinel finds them, and how a failover tells the demoted primary where
   its new primary is;
3. Sentinel monitors the primary's proxy (``SENTINEL MONITOR``;
   :func:`monitor_via`). With several Sentinels behind proxies, each would
   also set ``sentinel announce-ip`` / ``sentinel announce-port``.

Clients on the primary's side of a planned partition connect to it directly
(or through a proxy of their own), so that cutting the primary's ingress
isolates it from the replica and Sentinel but not from them: the split-brain
set-up. With ``down_after_ms=500`` the replica is promoted about 2 s after
the cut; after ``heal()`` Sentinel waits until the old primary has reported
itself master for 8 s (four 2 s hello periods) before it sends ``REPLICAOF``,
so the old primary rejoins, and drops the writes it acknowledged alone,
about 10 s after the heal. Everything listens on 127.0.0.1.

Example:
    >>> primary = Server(password=pw, config={"masterauth": pw}).start()
    >>> replica = Server(password=pw, config={"masterauth": pw}).start()
    >>> to_primary, to_replica = Proxy.to(primary).start(), Proxy.to(replica).start()
    >>> announce_via(primary, to_primary); announce_via(replica, to_replica)
    >>> replicate_via(replica, to_primary)
    >>> sentinel = Sentinel(primary).start(); monitor_via(sentinel, to_primary)
    >>> with Partition({"to primary": to_primary}):
    ...     primary.client().set("k", "acknowledged, then lost")
"""

from labkit.lab.proxy._partition import Partition
from labkit.lab.proxy._proxy import Proxy, running_proxies
from labkit.lab.proxy._state import ProxyEvent, ProxyStats
from labkit.lab.proxy._wiring import announce_via, monitor_via, replicate_via

__all__ = [
    "Partition",
    "Proxy",
    "ProxyEvent",
    "ProxyStats",
    "announce_via",
    "monitor_via",
    "replicate_via",
    "running_proxies",
]
