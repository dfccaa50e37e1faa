"""Library: sharding: routers that place keys on N servers, a client that uses them."""

from labkit.sharding._client import MoveReport, ShardedClient, move_keys
from labkit.sharding._hash import (
    SLOTS,
    crc16,
    hash32,
    hash64,
    hash_tag,
    key_slot,
    mix64,
    same_slot,
    tagged,
)
from labkit.sharding._nodes import NodeInfo, cluster_nodes, parse_cluster_nodes
from labkit.sharding._routers import (
    HashRing,
    JumpHash,
    ModuloRouter,
    Rendezvous,
    Router,
    jump_bucket,
)

__all__ = [
    "SLOTS",
    "HashRing",
    "JumpHash",
    "ModuloRouter",
    "MoveReport",
    "NodeInfo",
    "Rendezvous",
    "Router",
    "ShardedClient",
    "cluster_nodes",
    "crc16",
    "hash32",
    "hash64",
    "hash_tag",
    "jump_bucket",
    "key_slot",
    "mix64",
    "move_keys",
    "parse_cluster_nodes",
    "same_slot",
    "tagged",
]
