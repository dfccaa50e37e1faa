"""Lab: durability experiments on real servers: crash tests, power cuts, costs.

Replication, Sentinel failovers and split brain are in
:mod:`labkit.lab.persistence.ha`.
"""

from labkit.lab.persistence._crash import CrashResult, Outcome, crash_test
from labkit.lab.persistence._formats import (
    ForkCost,
    FormatResult,
    fork_cost,
    formats_test,
    load_random,
)
from labkit.lab.persistence._measure import (
    AofFile,
    RestartResult,
    aof_files,
    load_keys,
    restart_time,
    rewrite_aof,
    servers_for,
    write_throughput,
    written,
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
from labkit.lab.persistence._powercut import (
    SHIM_SOURCE,
    CutFile,
    PowerCutShim,
    SyncRecord,
    fsync_counts,
    fsync_log,
    power_cut,
    set_fsync_delay,
    shim_unavailable_reason,
)
from labkit.lab.persistence._powerloss import PowerLossResult, power_loss_test

__all__ = [
    "POLICIES",
    "SHIM_SOURCE",
    "AofFile",
    "CrashResult",
    "CutFile",
    "FillResult",
    "ForkCost",
    "FormatResult",
    "OsCrashExposure",
    "Outcome",
    "OverLimit",
    "PowerCutShim",
    "PowerLossResult",
    "RestartResult",
    "SyncRecord",
    "aof_files",
    "crash_test",
    "fill_to_limit",
    "fork_cost",
    "formats_test",
    "fsync_counts",
    "fsync_log",
    "load_keys",
    "load_random",
    "lua_over_limit",
    "os_crash_exposure",
    "policy_config",
    "power_cut",
    "power_loss_test",
    "restart_time",
    "rewrite_aof",
    "series_lua",
    "servers_for",
    "set_fsync_delay",
    "shim_unavailable_reason",
    "write_throughput",
    "written",
]
