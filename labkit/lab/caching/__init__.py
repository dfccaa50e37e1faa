"""Lab: the caching experiments and the slow origin database."""

from labkit.lab.caching.experiments import (
    EvictionResult,
    WindowResult,
    eviction_trial,
    get_on_new_connection,
    herd_trial,
    miss_hit,
    stampede_trial,
    ttl_trace,
    zipf_keys,
)
from labkit.lab.caching.origin import Origin, seed_sql

__all__ = [
    "EvictionResult",
    "Origin",
    "WindowResult",
    "eviction_trial",
    "get_on_new_connection",
    "herd_trial",
    "miss_hit",
    "seed_sql",
    "stampede_trial",
    "ttl_trace",
    "zipf_keys",
]
