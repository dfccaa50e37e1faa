"""Lab: the job-queue harness: worker processes, stand-in handlers, experiments."""

from labkit.lab.queues._procs import WorkerProcesses
from labkit.lab.queues.demo import (
    CrashRun,
    crash_run,
    flaky_sleep,
    noop,
    record,
    runs_key,
    try_queue,
)

__all__ = [
    "CrashRun",
    "WorkerProcesses",
    "crash_run",
    "flaky_sleep",
    "noop",
    "record",
    "runs_key",
    "try_queue",
]
