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
from labkit.lab.queues.faults import (
    ServerCrash,
    Traffic,
    TrafficCount,
    impatient_client,
    server_crash_run,
)
from labkit.lab.queues.latency import LatencyRun, latency_run
from labkit.lab.queues.threads import RunResult, run_threads

__all__ = [
    "CrashRun",
    "LatencyRun",
    "PoisonRun",
    "RunResult",
    "ServerCrash",
    "Traffic",
    "TrafficCount",
    "WorkerProcesses",
    "cpu_rates",
    "crash_run",
    "flaky_sleep",
    "impatient_client",
    "latency_run",
    "noop",
    "poison",
    "poison_run",
    "record",
    "run_threads",
    "runs_key",
    "server_crash_run",
    "spin",
    "starts_key",
    "try_queue",
]
