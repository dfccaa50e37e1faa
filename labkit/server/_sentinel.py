"""Sentinel: the same server binary run with ``--sentinel``, watching a primary."""

from __future__ import annotations

from typing import Any

import redis
import redis.sentinel

from labkit.core.args import check_int, check_name
from labkit.core.clients import execute
from labkit.server._process import Server, _binary_major_version

__all__ = ["Sentinel"]


class Sentinel(Server):
    """One Sentinel process monitoring ``primary`` under the name ``name``.

    Args:
        primary: The server to monitor (already started). Its replicas and any
            other Sentinels are discovered by Sentinel itself.
        name: The master name clients ask for (``SENTINEL GET-MASTER-ADDR-BY-NAME``).
        quorum: How many Sentinels must agree the primary is down; 1 for a
            single Sentinel (a lab shortcut: production runs three or more).
        down_after_ms: Silence after which the primary is considered down. The
            server default is 30000 ms; a small value keeps experiments short.
        failover_timeout_ms: ``failover-timeout``.
        monitor: ``(host, port)`` at which Sentinel reaches the primary, when
            that is not the primary's own address: a fault-injecting proxy in
            front of it (``labkit.lab.proxy``), so that the Sentinel can be
            partitioned from the primary from its first hello. A restart
            monitors this address again. Default: the primary's own.

    For failover to work every server in the group must accept the others'
    credentials: give the primary and its replicas one shared password and
    ``masterauth`` (see :func:`replica_config`).

    Example:
        >>> pw = "s3cret"
        >>> primary = Server(password=pw, config={"masterauth": pw}).start()
        >>> replica = Server(password=pw, config=replica_config(primary)).start()
        >>> sentinel = Sentinel(primary).start()
        >>> r = sentinel.master_for()  # follows the primary across failovers
    """

    def __init__(
        self,
        primary: Server,
        *,
        name: str = "labkit",
        quorum: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        monitor: tuple[str, int] | None = None,
    ) -> None:
        if not isinstance(primary, Server) or isinstance(primary, Sentinel):
            raise TypeError(f"primary={primary!r}: must be a started labkit Server")
        check_name("name", name, max_len=64)
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(
                f"name={name!r}: must use letters, digits, '-' and '_' (e.g. 'labkit')"
            )
        check_int("quorum", quorum, min=1, max=100)
        check_int("down_after_ms", down_after_ms, min=100, max=3_600_000)
        check_int("failover_timeout_ms", failover_timeout_ms, min=1000, max=3_600_000)
        if monitor is not None:
            if not (
                isinstance(monitor, tuple)
                and len(monitor) == 2
                and isinstance(monitor[0], str)
                and monitor[0]
            ):
                raise TypeError(
                    f"monitor={monitor!r}: must be a (host, port) tuple or None"
                )
            check_name("monitor host", monitor[0], max_len=255)
            if " " in monitor[0] or '"' in monitor[0]:
                raise ValueError(f"monitor={monitor!r}: must be a host name or IP")
            check_int("monitor port", monitor[1], min=1, max=65535)
        super().__init__(binary=primary.binary)
        self.primary = primary
        self.name = name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.monitor = monitor
        self._extra_args = ["--sentinel"]

    def _config_text(self) -> str:
        # Sentinel rewrites this file as it learns the topology; a restart()
        # writes it afresh, so a restarted Sentinel rediscovers from `primary`.
        p, n = self.primary, self.name
        host, port = self.monitor or (p.host, p.port)
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {self.port}",
            f'dir "{self.data_dir}"',
            'logfile "server.log"',
            "daemonize no",
            f"requirepass {self.password}",
            f"sentinel monitor {n} {host} {port} {self.quorum}",
            f"sentinel auth-pass {n} {p.password}",
            f"sentinel down-after-milliseconds {n} {self.down_after_ms}",
            f"sentinel failover-timeout {n} {self.failover_timeout_ms}",
        ]
        if _binary_major_version(self.binary) >= 7:
            lines.append('proc-title-template "{title} {listen-addr} {config-file}"')
        return "\n".join(lines) + "\n"

    def master_address(self) -> tuple[str, int] | None:
        """The (host, port) Sentinel currently names as primary, or None."""
        addr = execute(self.client(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return (addr[0], int(addr[1])) if addr else None

    def sentinel_client(self, **kwargs: Any) -> redis.sentinel.Sentinel:
        """A ``redis.sentinel.Sentinel`` that asks this Sentinel where to go."""
        kwargs.setdefault("decode_responses", True)
        return redis.sentinel.Sentinel(
            [(self.host, self.port)],
            sentinel_kwargs={"password": self.password},
            password=self.primary.password,
            **kwargs,
        )

    def master_for(self, **kwargs: Any) -> redis.Redis:
        """A client for whichever server is primary now (re-resolved on failure)."""
        client: redis.Redis = self.sentinel_client(**kwargs).master_for(self.name)
        return client


def replica_config(primary: Server) -> dict[str, str]:
    """Config for a replica of ``primary`` that can itself be promoted later.

    Give the replica ``password=primary.password`` too: after a failover the
    old primary comes back as a replica and must authenticate to the new one.
    """
    return {
        "replicaof": f"{primary.host} {primary.port}",
        "masterauth": primary.password,
    }
