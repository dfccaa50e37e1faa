"""Lab: sharding experiments, live cluster operations, the URL shortener."""

from labkit.lab.sharding import (
    bigkey,
    failover,
    hotspots,
    migration,
    reshard,
    scale,
    shortener,
)
from labkit.lab.sharding._measure import (
    ROUTER_KINDS,
    Spread,
    char_sum,
    explore_router,
    growth_cost,
    load_spread,
    make_router,
    moved_fraction,
    ring_balance,
    sample_keys,
)

__all__ = [
    "ROUTER_KINDS",
    "Spread",
    "bigkey",
    "char_sum",
    "explore_router",
    "failover",
    "growth_cost",
    "hotspots",
    "load_spread",
    "make_router",
    "migration",
    "moved_fraction",
    "reshard",
    "ring_balance",
    "sample_keys",
    "scale",
    "shortener",
]
