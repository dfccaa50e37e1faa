"""Library: sharding: routers that place keys on N servers, a client that uses them."""

from labkit.sharding._client import MoveReport, ShardedClient, move_keys
from labkit.sharding._hash import SLOTS, char_sum, crc16, hash64, key_slot, mix64
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
    "Rendezvous",
    "Router",
    "ShardedClient",
    "char_sum",
    "crc16",
    "hash64",
    "jump_bucket",
    "key_slot",
    "mix64",
    "move_keys",
]
