"""Lab: the caching experiments, the slow origin and the tutorials' HTTP setting."""

from labkit.lab.caching.experiments import (
    EvictionResult,
    StampedeCost,
    WindowResult,
    belady_hit_ratio,
    command_counts,
    commands_run,
    eviction_trial,
    get_on_new_connection,
    herd_trial,
    lfu_hit_ratio,
    lru_hit_ratio,
    miss_hit,
    stale_reads,
    stampede_trial,
    ttl_trace,
    zipf_keys,
)
from labkit.lab.caching.http import App, DriveResult, drive
from labkit.lab.caching.origin import TUTORIAL_PHOTOS, Origin, seed_sql
from labkit.lab.caching.readlog import ReadLog

__all__ = [
    "TUTORIAL_PHOTOS",
    "App",
    "DriveResult",
    "EvictionResult",
    "Origin",
    "ReadLog",
    "StampedeCost",
    "WindowResult",
    "belady_hit_ratio",
    "command_counts",
    "commands_run",
    "drive",
    "eviction_trial",
    "get_on_new_connection",
    "herd_trial",
    "lfu_hit_ratio",
    "lru_hit_ratio",
    "miss_hit",
    "seed_sql",
    "stale_reads",
    "stampede_trial",
    "ttl_trace",
    "zipf_keys",
]
