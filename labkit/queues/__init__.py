"""Library: a reliable job queue on Redis Streams (retries, dead letters), fan-out."""

from labkit.queues._fanout import FanOut, PartResult
from labkit.queues._queue import GROUP, Job, JobQueue
from labkit.queues._types import JobStatus, QueueCounts
from labkit.queues._worker import Handler, Worker, bounded_client

__all__ = [
    "GROUP",
    "FanOut",
    "Handler",
    "Job",
    "JobQueue",
    "JobStatus",
    "PartResult",
    "QueueCounts",
    "Worker",
    "bounded_client",
]
