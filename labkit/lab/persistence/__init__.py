"""Lab: durability experiments on real servers: crash tests, costs, failover."""

from labkit.lab.persistence._crash import CrashResult, crash_test
from labkit.lab.persistence._measure import (
    AofFile,
    RestartResult,
    aof_files,
    load_keys,
    restart_time,
    rewrite_aof,
    servers_for,
    write_throughput,
)
from labkit.lab.persistence._memory import (
    FillResult,
    OverLimit,
    fill_to_limit,
    lua_over_limit,
    series_lua,
)
from labkit.lab.persistence._policies import (
    POLICIES,
    OsCrashExposure,
    os_crash_exposure,
    policy_config,
)

__all__ = [
    "POLICIES",
    "AofFile",
    "CrashResult",
    "FillResult",
    "OsCrashExposure",
    "OverLimit",
    "RestartResult",
    "aof_files",
    "crash_test",
    "fill_to_limit",
    "load_keys",
    "lua_over_limit",
    "os_crash_exposure",
    "policy_config",
    "restart_time",
    "rewrite_aof",
    "series_lua",
    "servers_for",
    "write_throughput",
]
