"""A reliable job queue on Redis Streams: retries, dead letters, crash recovery."""

from labkit.queues._procs import WorkerProcesses
from labkit.queues._queue import GROUP, Job, JobQueue
from labkit.queues._types import JobStatus, QueueCounts
from labkit.queues._worker import Handler, RunResult, Worker, run_threads

__all__ = [
    "GROUP",
    "Handler",
    "Job",
    "JobQueue",
    "JobStatus",
    "QueueCounts",
    "RunResult",
    "Worker",
    "WorkerProcesses",
    "run_threads",
]
