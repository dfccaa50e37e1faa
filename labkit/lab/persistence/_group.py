"""A primary, its replicas and a Sentinel, optionally wired through proxies."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from types import TracebackType

from labkit.core.args import check_int
from labkit.lab.errors import ExperimentTimeoutError
from labkit.lab.proxy import (
    Partition,
    Proxy,
    announce_via,
    replicate_via,
)
from labkit.server import Sentinel, Server, replica_config

__all__ = ["ReplicatedGroup", "frozen"]


class ReplicatedGroup:
    """A primary, ``replicas`` replicas of it and, optionally, one Sentinel.

    Args:
        replicas: Number of replicas (1 to 5).
        sentinel: Also start a Sentinel watching the primary.
        down_after_ms: Sentinel's ``down-after-milliseconds`` (100 to 60000).
        failover_timeout_ms: Sentinel's ``failover-timeout`` (1000 to 600000).
        config: Extra config for every data server (e.g. a persistence policy).
        proxied: Put a fault-injecting proxy (``labkit.lab.proxy.Proxy``) in
            front of every data server: replicas replicate through the
            primary's proxy, every server announces its own proxy, and the
            Sentinel monitors the primary through it. Cutting a server's proxy
            (:meth:`isolate`) then separates it from every other node, while
            clients made with ``server.client()`` still reach it directly:
            the set-up of a split brain.

    All servers share one password and ``masterauth``, so any of them can be
    promoted and the others follow. Use as a context manager; everything is
    stopped and removed on exit.
    """

    def __init__(
        self,
        replicas: int = 1,
        *,
        sentinel: bool = False,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        config: dict[str, str] | None = None,
        proxied: bool = False,
    ) -> None:
        check_int("replicas", replicas, min=1, max=5)
        check_int("down_after_ms", down_after_ms, min=100, max=60_000)
        check_int("failover_timeout_ms", failover_timeout_ms, min=1000, max=600_000)
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config={config!r}: must be a dict of directives or None")
        for flag, value in (("sentinel", sentinel), ("proxied", proxied)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag}={value!r}: must be True or False")
        self.password = secrets.token_hex(16)
        self._config = dict(config or {})
        self._n = replicas
        self._want_sentinel = sentinel
        self._sentinel_args = (down_after_ms, failover_timeout_ms)
        self.proxied = proxied
        self.primary: Server | None = None
        self.replicas: list[Server] = []
        self.sentinel: Sentinel | None = None
        #: The proxy in front of each data server, by server (``proxied`` only).
        self.proxies: dict[Server, Proxy] = {}

    @property
    def servers(self) -> list[Server]:
        """The data servers: the first primary, then the replicas."""
        return [s for s in (self.primary, *self.replicas) if s is not None]

    def start(self, timeout: float = 30.0) -> ReplicatedGroup:
        """Start every server and wait until each replica is in sync."""
        pw = self.password
        base = {**self._config, "masterauth": pw}
        try:
            self.primary = Server(config=base, password=pw).start()
            if self.proxied:
                self._ingress(self.primary)
            for _ in range(self._n):
                if self.proxied:
                    replica = Server(config=base, password=pw).start()
                    self._ingress(replica)
                    replicate_via(replica, self.proxies[self.primary])
                else:
                    cfg = {**base, **replica_config(self.primary)}
                    replica = Server(config=cfg, password=pw).start()
                self.replicas.append(replica)
            self.wait_synced(timeout)
            if self._want_sentinel:
                self._start_sentinel(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _ingress(self, server: Server) -> None:
        proxy = Proxy.to(server).start()
        self.proxies[server] = proxy
        announce_via(server, proxy)

    def _start_sentinel(self, timeout: float) -> None:
        assert self.primary is not None
        down, fo = self._sentinel_args
        front = self.proxies.get(self.primary)
        self.sentinel = Sentinel(
            self.primary,
            down_after_ms=down,
            failover_timeout_ms=fo,
            monitor=(front.host, front.port) if front else None,
        ).start()
        # A failover needs a replica to promote: wait until Sentinel has
        # found every one in the primary's INFO replication and connected
        # to it (until then its flags read "slave,disconnected").
        want = {self.address(r)[1] for r in self.replicas}
        deadline = time.monotonic() + timeout
        with self.sentinel.client() as s:
            while True:
                found = s.execute_command("SENTINEL", "REPLICAS", self.sentinel.name)
                ready = {int(r["port"]) for r in found if r["flags"] == "slave"}
                if ready >= want:
                    return
                if time.monotonic() > deadline:
                    raise ExperimentTimeoutError(
                        f"Sentinel found {len(found)} of {len(want)} replicas "
                        f"within {timeout:g} s:\n{self.sentinel.log_tail(10)}",
                        server=f"{self.sentinel.host}:{self.sentinel.port}",
                        waited="Sentinel to discover every replica",
                    )
                time.sleep(0.05)

    def address(self, server: Server) -> tuple[str, int]:
        """Where the other nodes reach ``server``: its proxy, or itself."""
        front = self.proxies.get(server)
        return (front.host, front.port) if front else (server.host, server.port)

    def server_at(self, address: tuple[str, int] | None) -> Server | None:
        """The data server that other nodes reach at ``address``, if any."""
        for server in self.servers:
            if address is not None and self.address(server)[1] == address[1]:
                return server
        return None

    def current_primary(self) -> Server:
        """The server Sentinel names as primary now (the first one without one)."""
        if self.sentinel is None:
            assert self.primary is not None
            return self.primary
        found = self.server_at(self.sentinel.master_address())
        if found is None:
            raise ExperimentTimeoutError(
                f"Sentinel names {self.sentinel.master_address()}, no server of "
                f"{self!r}",
                server=f"{self.sentinel.host}:{self.sentinel.port}",
                waited="a primary of this group",
            )
        return found

    def isolate(self, server: Server) -> Partition:
        """A (not yet cut) partition: ``server`` and its direct clients on one
        side, every other node and the Sentinel on the other.

        Cutting the proxy in front of ``server`` is enough: every other node
        reaches it only through that proxy, and it reaches none of them (a
        replica connects to its primary, not the other way round).
        """
        if server not in self.proxies:
            raise ValueError(
                f"server={server!r}: isolate() needs ReplicatedGroup(proxied=True) "
                "and one of its data servers"
            )
        return Partition({f"to {server.port}": self.proxies[server]})

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Block until every replica's link to its primary is up."""
        deadline = time.monotonic() + timeout
        for replica in self.replicas:
            with replica.client() as probe:
                while probe.info("replication").get("master_link_status") != "up":
                    if time.monotonic() > deadline:
                        raise ExperimentTimeoutError(
                            f"replica on port {replica.port} not in sync after "
                            f"{timeout:g} s:\n{replica.log_tail(10)}",
                            server=f"{replica.host}:{replica.port}",
                            waited="master_link_status:up",
                        )
                    time.sleep(0.02)

    def close(self) -> None:
        """Stop and remove every server and proxy of the group."""
        for server in [self.sentinel, *self.replicas, self.primary]:
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                proxy.close()

    def __repr__(self) -> str:
        ports = [s.port for s in self.servers if s.running]
        return f"<ReplicatedGroup servers={ports} sentinel={self.sentinel is not None}>"

    def __enter__(self) -> ReplicatedGroup:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def frozen(server: Server) -> Iterator[None]:
    """SIGSTOP ``server`` for the ``with`` block, SIGCONT after (always).

    A frozen process keeps its sockets open but answers nothing: to the
    others it looks like a stalled machine or a network partition.
    """
    pid = server.pid
    if pid is None:
        raise ValueError(f"server={server!r}: is not running")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
