"""Sentinel: the same server binary run with ``--sentinel``, watching a primary."""

from __future__ import annotations

from typing import Any

import redis
import redis.sentinel

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
    ) -> None:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(
                f"name={name!r}: use letters, digits, '-' and '_' (e.g. 'labkit')"
            )
        if quorum < 1:
            raise ValueError(f"quorum={quorum!r}: must be >= 1")
        if down_after_ms < 100:
            raise ValueError(f"down_after_ms={down_after_ms!r}: must be >= 100")
        if failover_timeout_ms < 1000:
            raise ValueError(
                f"failover_timeout_ms={failover_timeout_ms!r}: must be >= 1000"
            )
        super().__init__(binary=primary.binary)
        self.primary = primary
        self.name = name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._extra_args = ["--sentinel"]

    def _config_text(self) -> str:
        # Sentinel rewrites this file as it learns the topology; a restart()
        # writes it afresh, so a restarted Sentinel rediscovers from `primary`.
        p, n = self.primary, self.name
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {self.port}",
            f'dir "{self.data_dir}"',
            'logfile "server.log"',
            "daemonize no",
            f"requirepass {self.password}",
            f"sentinel monitor {n} {p.host} {p.port} {self.quorum}",
            f"sentinel auth-pass {n} {p.password}",
            f"sentinel down-after-milliseconds {n} {self.down_after_ms}",
            f"sentinel failover-timeout {n} {self.failover_timeout_ms}",
        ]
        if _binary_major_version(self.binary) >= 7:
            lines.append('proc-title-template "{title} {listen-addr} {config-file}"')
        return "\n".join(lines) + "\n"

    def master_address(self) -> tuple[str, int] | None:
        """The (host, port) Sentinel currently names as primary, or None."""
        addr = self.client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name
        )
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
        return self.sentinel_client(**kwargs).master_for(self.name)


def replica_config(primary: Server) -> dict[str, str]:
    """Config for a replica of ``primary`` that can itself be promoted later.

    Give the replica ``password=primary.password`` too: after a failover the
    old primary comes back as a replica and must authenticate to the new one.
    """
    return {
        "replicaof": f"{primary.host} {primary.port}",
        "masterauth": primary.password,
    }
