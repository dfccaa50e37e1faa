"""JobQueue: enqueue, inspect and dead-letter jobs held in a Redis stream."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from labkit.queues._types import JobStatus, QueueCounts, _positive_int, _seconds

__all__ = ["GROUP", "Job", "JobQueue"]

#: The consumer group every worker of a queue joins.
GROUP = "workers"

_SCRIPTS = ("enqueue", "promote", "start", "ack", "fail")


def _load_lua(name: str) -> str:
    return resources.files("labkit").joinpath(f"lua/queues_{name}.lua").read_text()


@dataclass(frozen=True)
class Job:
    """What a handler receives: one delivery of one job.

    Attributes:
        id: The job id (the same on every attempt and redelivery).
        payload: The decoded JSON payload.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        message_id: The stream entry id of this delivery.
        queue: The queue it came from (``queue.client`` for handler I/O).
    """

    id: str
    payload: Any
    attempt: int
    message_id: str
    queue: JobQueue

    def once(self, step: str = "", *, ttl: float = 86400.0) -> bool:
        """True the first time this job reaches ``step``; False on any rerun.

        See :meth:`JobQueue.once`.
        """
        return self.queue.once(self.id, step, ttl=ttl)


class JobQueue:
    """A reliable job queue on a Redis stream with a consumer group.

    Args:
        client: A ``redis.Redis`` (``decode_responses=True``).
        name: Queue name; it becomes the ``{hash tag}`` of every key.
        max_attempts: Attempts per job before it goes to the dead-letter
            stream (an int >= 1; 1 means no retry).
        backoff: Seconds before the first retry; retry ``n`` waits
            ``backoff * 2 ** (n - 1)``, capped at ``max_backoff``.
        max_backoff: Longest wait between attempts, in seconds.
        visibility_timeout: Seconds a delivered job may stay unacknowledged
            before another worker takes it over (XAUTOCLAIM). Longer than your
            slowest job, or a slow job will run twice.
        keep: Seconds a finished job's record is kept for :meth:`status`.
        prefix: Start of every key.

    Keys (``P`` = ``<prefix>:{<name>}``; the tag keeps them in one cluster
    slot, since every script touches several):
        ``P:stream`` (stream): ready jobs, one entry per delivery, consumer
        group ``workers``; entries are deleted once acknowledged.
        ``P:delayed`` (sorted set): delayed jobs and retries by due time (ms).
        ``P:dead`` (stream): dead letters (job, payload, attempts, error).
        ``P:stats`` (hash): running totals (see :class:`QueueCounts`).
        ``P:job:<id>`` (hash): one job's record (payload, state, attempts).
        ``P:once:<id>:<step>`` (string): markers set by :meth:`once`.

    Delivery is **at least once**: a job whose worker dies after doing the
    work but before acknowledging it runs again elsewhere. Make handlers
    idempotent, or guard side effects with :meth:`Job.once`.
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        max_attempts: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        visibility_timeout: float = 30.0,
        keep: float = 3600.0,
        prefix: str = "lab:queue",
    ) -> None:
        if not isinstance(client, redis.Redis | redis.RedisCluster):
            raise TypeError(f"client={client!r}: must be a redis.Redis")
        for arg, value in (("name", name), ("prefix", prefix)):
            if not isinstance(value, str) or not value or "{" in value:
                raise ValueError(f"{arg}={value!r}: must be a non-empty str without {{")
        self.client = client
        self.name = name
        self.prefix = prefix
        self.max_attempts = _positive_int("max_attempts", max_attempts)
        self.backoff = _seconds("backoff", backoff)
        self.max_backoff = _seconds("max_backoff", max_backoff)
        self.visibility_timeout = _seconds(
            "visibility_timeout", visibility_timeout, minimum=0.01
        )
        self.keep = max(1, round(_seconds("keep", keep, minimum=1)))
        self.scripts = {n: client.register_script(_load_lua(n)) for n in _SCRIPTS}
        self.ensure_group()

    # --- keys ---------------------------------------------------------------
    @property
    def base(self) -> str:
        """The common start of this queue's keys."""
        return f"{self.prefix}:{{{self.name}}}"

    @property
    def stream(self) -> str:
        """Stream of ready jobs."""
        return f"{self.base}:stream"

    @property
    def delayed(self) -> str:
        """Sorted set of delayed jobs."""
        return f"{self.base}:delayed"

    @property
    def dead(self) -> str:
        """Dead-letter stream."""
        return f"{self.base}:dead"

    @property
    def stats(self) -> str:
        """Hash of running totals."""
        return f"{self.base}:stats"

    def job_key(self, job_id: str) -> str:
        """The record of one job."""
        return f"{self.base}:job:{job_id}"

    def __repr__(self) -> str:
        return f"<JobQueue {self.name!r} max_attempts={self.max_attempts}>"

    # --- producing ----------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the stream and its consumer group if they do not exist."""
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _encode(self, payload: Any) -> str:
        try:
            return json.dumps(payload, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"payload={payload!r:.80}: must be JSON-serialisable "
                f"(dict, list, str, int, float, bool, None): {exc}"
            ) from exc

    def enqueue(self, payload: Any, delay: float = 0) -> str:
        """Add a job; it runs as soon as a worker is free, or after ``delay``.

        Args:
            payload: Any JSON-serialisable value.
            delay: Seconds to wait before the job may run (>= 0; server clock).

        Returns:
            The job id (32 hex characters).

        Raises:
            TypeError: ``payload`` cannot be encoded as JSON.
            ValueError: ``delay`` is negative or not finite.
        """
        return self.enqueue_many([payload], delay=delay)[0]

    def enqueue_many(self, payloads: Iterable[Any], delay: float = 0) -> list[str]:
        """Add many jobs in one round trip; returns their ids in order."""
        delay_ms = round(_seconds("delay", delay) * 1000)
        encoded = [self._encode(p) for p in payloads]
        ids = [uuid.uuid4().hex for _ in encoded]
        pipe = self.client.pipeline(transaction=False)
        args = (
            self.max_attempts,
            round(self.backoff * 1000),
            round(self.max_backoff * 1000),
        )
        for job_id, data in zip(ids, encoded, strict=True):
            self.scripts["enqueue"](
                keys=[self.stream, self.delayed, self.job_key(job_id), self.stats],
                args=[job_id, data, delay_ms, *args],
                client=pipe,
            )
        pipe.execute()
        return ids

    # --- inspecting ---------------------------------------------------------
    def status(self, job_id: str) -> JobStatus | None:
        """The record of one job, or None if unknown (or expired after ``keep``)."""
        rec: Any = self.client.hgetall(self.job_key(job_id))
        if not rec:
            return None
        return JobStatus(
            job_id,
            rec["state"],
            int(rec["attempts"]),
            int(rec["max_attempts"]),
            rec.get("error", ""),
        )

    def counts(self) -> QueueCounts:
        """Jobs in each state and the running totals, read in one round trip."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xlen(self.stream)
        pipe.xpending(self.stream, GROUP)
        pipe.zcard(self.delayed)
        pipe.hgetall(self.stats)
        length, pending, delayed, stats = pipe.execute()
        running = int(pending["pending"])
        totals = [
            int(stats.get(k, 0))
            for k in ("enqueued", "completed", "retried", "dead", "recovered")
        ]
        return QueueCounts(length - running, running, delayed, *totals)

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The oldest ``count`` dead letters: job, payload, attempts, error."""
        out = []
        entries: Any = self.client.xrange(self.dead, count=count)
        for _entry_id, fields in entries:
            out.append(
                {
                    "job": fields["job"],
                    "payload": json.loads(fields["payload"]),
                    "attempts": int(fields["attempts"]),
                    "error": fields["error"],
                }
            )
        return out

    def drained(self) -> bool:
        """True when nothing is waiting, running or delayed."""
        counts = self.counts()
        return counts.waiting + counts.running + counts.delayed == 0

    # --- idempotency --------------------------------------------------------
    def once(self, job_id: str, step: str = "", *, ttl: float = 86400.0) -> bool:
        """Claim a one-time step of a job: True the first time, False after.

        Call it just before a side effect that must not repeat when a job runs
        again after a crash (an email, a payment). The marker is set *before*
        the effect, so a crash between the two skips the effect on the rerun:
        that step becomes at-most-once. Where the effect itself can be made
        idempotent (an upsert keyed by the job id), prefer that.

        Args:
            job_id: The job's id.
            step: Names the effect when a job has several.
            ttl: Seconds to remember the marker (longer than any retry delay).
        """
        key = f"{self.base}:once:{job_id}:{step}"
        seconds = max(1, round(_seconds("ttl", ttl, minimum=1)))
        return bool(self.client.set(key, "1", nx=True, ex=seconds))
