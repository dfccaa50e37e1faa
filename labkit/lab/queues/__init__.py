"""Lab: the job-queue harness: worker processes, stand-in handlers, experiments."""

from labkit.lab.queues._procs import WorkerProcesses
from labkit.lab.queues.demo import (
    CrashRun,
    PoisonRun,
    cpu_rates,
    crash_run,
    flaky_sleep,
    noop,
    poison,
    poison_run,
    record,
    runs_key,
    spin,
    starts_key,
    try_queue,
)

__all__ = [
    "CrashRun",
    "PoisonRun",
    "WorkerProcesses",
    "cpu_rates",
    "crash_run",
    "flaky_sleep",
    "noop",
    "poison",
    "poison_run",
    "record",
    "runs_key",
    "spin",
    "starts_key",
    "try_queue",
]
