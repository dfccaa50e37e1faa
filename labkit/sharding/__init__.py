"""Sharding: routers that place keys on N servers, and a client that uses them."""

from labkit.sharding._client import MoveReport, ShardedClient, move_keys
from labkit.sharding._hash import SLOTS, char_sum, crc16, hash64, key_slot, mix64
from labkit.sharding._measure import (
    ROUTER_KINDS,
    Spread,
    growth_cost,
    load_spread,
    make_router,
    moved_fraction,
    ring_balance,
    sample_keys,
)
from labkit.sharding._routers import (
    HashRing,
    JumpHash,
    ModuloRouter,
    Rendezvous,
    Router,
    jump_bucket,
)

__all__ = [
    "ROUTER_KINDS",
    "SLOTS",
    "HashRing",
    "JumpHash",
    "ModuloRouter",
    "MoveReport",
    "Rendezvous",
    "Router",
    "ShardedClient",
    "Spread",
    "char_sum",
    "crc16",
    "growth_cost",
    "hash64",
    "jump_bucket",
    "key_slot",
    "load_spread",
    "make_router",
    "mix64",
    "move_keys",
    "moved_fraction",
    "ring_balance",
    "sample_keys",
]
