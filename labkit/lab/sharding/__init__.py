"""Lab: sharding experiments, live resharding of a cluster, the URL shortener."""

from labkit.lab.sharding import reshard, shortener
from labkit.lab.sharding._measure import (
    ROUTER_KINDS,
    Spread,
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
    "explore_router",
    "growth_cost",
    "load_spread",
    "make_router",
    "moved_fraction",
    "reshard",
    "ring_balance",
    "sample_keys",
    "shortener",
]
