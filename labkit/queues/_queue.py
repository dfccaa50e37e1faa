"""JobQueue: enqueue, inspect and dead-letter jobs held in a Redis stream."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from labkit.core import direct
from labkit.core.args import (
    DAY,
    YEAR,
    check_count,
    check_name,
    check_seconds,
    check_tag,
)
from labkit.core.clients import check_client, decoded
from labkit.core.keys import key_part
from labkit.errors import WrongTypeError
from labkit.queues._scripts import (
    COUNTS,
    ENQUEUE,
    TOUCH,
    encode_payload,
    raise_script_error,
)
from labkit.queues._types import JobStatus, QueueCounts

__all__ = ["GROUP", "Job", "JobQueue", "read_counts"]

#: The consumer group every worker of a queue joins.
GROUP = "workers"


def read_counts(
    queue: JobQueue, client: redis.Redis | redis.RedisCluster
) -> QueueCounts:
    """:meth:`JobQueue.counts` through a given client (a worker's own)."""
    try:
        length, pending, delayed, flat = decoded(
            COUNTS(client, [queue.stream, queue.delayed, queue.stats], [GROUP])
        )
    except redis.ResponseError as exc:
        raise_script_error(exc, queue=queue.name)
    stats = dict(zip(flat[::2], flat[1::2], strict=True))
    totals = [
        int(stats.get(k, 0))
        for k in ("enqueued", "completed", "retried", "dead", "recovered", "lost")
    ]
    running = int(pending)
    return QueueCounts(max(0, int(length) - running), running, int(delayed), *totals)


@dataclass(frozen=True)
class Job:
    """What a handler receives: one delivery of one job.

    Attributes:
        id: The job id (the same on every attempt and redelivery).
        payload: The decoded JSON payload.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        message_id: The stream entry id of this delivery.
        queue: The queue it came from (``queue.client`` for handler I/O).
        worker: The consumer name of the worker running it.
        deliveries: How many times the stream delivered this entry (XPENDING's
            delivery count: it climbs each time a worker dies holding it).
    """

    id: str
    payload: Any
    attempt: int
    message_id: str
    queue: JobQueue
    worker: str = ""
    deliveries: int = 1

    def once(self, step: str = "", *, ttl: float = 86400.0) -> bool:
        """True the first time this job reaches ``step``; False on any rerun.

        See :meth:`JobQueue.once`.
        """
        return self.queue.once(self.id, step, ttl=ttl)

    def heartbeat(self) -> bool:
        """Tell the queue this job is still running (for jobs longer than the
        visibility timeout).

        Resets the entry's idle time (``XCLAIM <id> JUSTID`` by this job's own
        worker, in a script that first checks the worker still holds it), so no
        other worker takes it over for another ``visibility_timeout``. Call it
        more often than that.

        Returns:
            True if this worker still held the job; False if another worker had
            already taken it over (this run is now a duplicate: stop if you can).
        """
        q = self.queue
        try:
            held = TOUCH(q.client, [q.stream], [GROUP, self.worker, self.message_id])
        except redis.ResponseError as exc:
            raise_script_error(exc, queue=q.name)
        return bool(held)


class JobQueue:
    """A reliable job queue on a Redis stream with a consumer group.

    Args:
        client: A ``redis.Redis`` or ``redis.RedisCluster``, with or without
            ``decode_responses`` (replies are decoded here).
        name: Queue name; it becomes the ``{hash tag}`` of every key, so it is
            non-empty and has no braces.
        max_attempts: Attempts per job before it goes to the dead-letter
            stream (1 to 1000; 1 means no retry).
        backoff: Seconds before the first retry; retry ``n`` waits
            ``backoff * 2 ** (n - 1)``, capped at ``max_backoff`` (0 to a day).
        max_backoff: Longest wait between attempts, in seconds (0 to a day).
        visibility_timeout: Seconds a started job may run unacknowledged
            before another worker takes it over (XAUTOCLAIM): longer than your
            slowest job, or a slow job runs twice (or call
            :meth:`Job.heartbeat`). From 0.01 s to a day.
        keep: Seconds a finished job's record is kept for :meth:`status`.
        keep_dead: Seconds a dead job's record is kept (its dead letter stays
            in the dead-letter stream, up to ``max_dead`` of them).
        max_length: Most jobs the queue holds at once (waiting, running and
            delayed); :meth:`enqueue` beyond it raises
            :class:`~labkit.errors.QueueFullError` (backpressure).
        max_dead: Most dead letters kept (the oldest are trimmed).
        prefix: Start of every key (no braces).

    Keys (one cluster slot: the name is their hash tag, as scripts use several):
        ``<prefix>:{<name>}:stream`` (stream with the consumer group "workers"):
        jobs waiting and running, one entry per delivery; no TTL: each entry
        is deleted once acknowledged, and with the delayed set it holds at
        most max_length jobs (enqueue refuses beyond).
        ``<prefix>:{<name>}:delayed`` (sorted set): delayed jobs and retries
        by due time (ms); no TTL: counted in max_length.
        ``<prefix>:{<name>}:dead`` (stream): dead letters (job, payload,
        attempts, error); no TTL: capped at max_dead entries (MAXLEN).
        ``<prefix>:{<name>}:stats`` (hash): running totals; no TTL: six fields.
        ``<prefix>:{<name>}:job:<id>`` (hash): one job's record (payload,
        state, attempts); no TTL while the job is live (at most max_length of
        them), then keep seconds once done and keep_dead once dead.
        ``<prefix>:{<name>}:once:<id>:<step>`` (string): markers set by
        once(), expiring after the ttl given there.

    Delivery is **at least once**: a job whose worker dies after doing the
    work but before acknowledging it runs again elsewhere. Make handlers
    idempotent, or guard side effects with :meth:`Job.once`. Nothing is lost
    while the server keeps its data: a server that restarts without
    persistence (or fails over to a replica that had not received the last
    writes) loses acknowledged enqueues.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        name: str,
        *,
        max_attempts: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        visibility_timeout: float = 30.0,
        keep: float = 3600.0,
        keep_dead: float = 7 * DAY,
        max_length: int = 1_000_000,
        max_dead: int = 10_000,
        prefix: str = "labkit:queue",
    ) -> None:
        self.client = check_client(client, owner="JobQueue")
        self.name = check_tag("name", check_name("name", name))
        self.prefix = check_tag("prefix", check_name("prefix", prefix))
        self.max_attempts = check_count("max_attempts", max_attempts, max=1000)
        self.backoff = check_seconds("backoff", backoff, max=DAY, min_open=False)
        self.max_backoff = check_seconds(
            "max_backoff", max_backoff, max=DAY, min_open=False
        )
        self.visibility_timeout = check_seconds(
            "visibility_timeout", visibility_timeout, min=0.01, max=DAY, min_open=False
        )
        self.keep = round(check_seconds("keep", keep, min=1, min_open=False))
        self.keep_dead = round(
            check_seconds("keep_dead", keep_dead, min=1, min_open=False)
        )
        self.max_length = check_count("max_length", max_length, max=10**9)
        self.max_dead = check_count("max_dead", max_dead, max=10**7)
        self._checked = False  # ensure_group() ran (the first enqueue runs it)
        #: The common start of this queue's keys.
        self.base = f"{self.prefix}:{{{key_part(self.name)}}}"
        self.stream = f"{self.base}:stream"  #: stream of ready jobs
        self.delayed = f"{self.base}:delayed"  #: sorted set of delayed jobs
        self.dead = f"{self.base}:dead"  #: dead-letter stream
        self.stats = f"{self.base}:stats"  #: hash of running totals

    # --- keys ---------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        """The record of one job."""
        return f"{self.base}:job:{key_part(job_id)}"

    def __repr__(self) -> str:
        return f"<JobQueue {self.name!r} max_attempts={self.max_attempts}>"

    # --- producing ----------------------------------------------------------
    def ensure_group(
        self, client: redis.Redis | redis.RedisCluster | None = None
    ) -> None:
        """Create the stream and its consumer group if they do not exist.

        The constructor does no I/O: the first :meth:`enqueue` and a worker's
        :meth:`~labkit.queues.Worker.start` call this (so does a caller that
        wants the check early).

        Raises:
            WrongTypeError: The stream's key holds another type of value, or
                someone else's stream (nothing is written).
        """
        client = self.client if client is None else client
        self._check_stream(client)
        try:
            client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._checked = True

    def _check_stream(self, client: redis.Redis | redis.RedisCluster) -> bool:
        """Refuse a stream key of another type or someone else's stream
        (WrongTypeError); True if the stream exists."""
        found = decoded(client.type(self.stream))
        if found not in ("stream", "none"):
            raise_script_error(
                redis.ResponseError(f"BADTYPE {self.stream} {found!s} stream"),
                queue=self.name,
            )
        if found == "stream" and not self._ours(client):
            raise WrongTypeError(
                f"key {self.stream!r} holds a stream that is not a JobQueue's (no "
                f"{GROUP!r} group, and its newest entry is not {{job, payload}}): "
                "another program uses this name; pick another queue name or "
                "prefix (nothing was written)",
                key=self.stream,
                found="stream of foreign entries",
                expected="stream",
            )
        return bool(found == "stream")

    def _ours(self, client: redis.Redis | redis.RedisCluster) -> bool:
        """True if the existing stream is this queue's: it has the group, or
        its newest entry has the fields enqueue writes (or it is empty)."""
        groups = decoded(client.xinfo_groups(self.stream))
        if any(g["name"] == GROUP for g in groups):
            return True
        newest = decoded(client.xrevrange(self.stream, count=1))
        return not newest or sorted(newest[0][1] or {}) == ["job", "payload"]

    def enqueue(self, payload: Any, delay: float = 0) -> str:
        """Add a job; it runs as soon as a worker is free, or after ``delay``.

        One script call (``EVALSHA``): one round trip.

        Args:
            payload: Any JSON-serialisable value.
            delay: Seconds to wait before the job may run (0 to a year; server
                clock).

        Returns:
            The job id (32 hex characters).

        Raises:
            TypeError: ``payload`` cannot be encoded as JSON.
            ValueError: ``delay`` is negative, not finite or over a year.
            QueueFullError: The queue holds ``max_length`` jobs already.
            WrongTypeError: One of the queue's keys holds another type.
        """
        return self.enqueue_many([payload], delay=delay)[0]

    def enqueue_many(self, payloads: Iterable[Any], delay: float = 0) -> list[str]:
        """Add many jobs in one script call (one round trip); returns their ids.

        All or nothing: the script checks the keys and the queue's bound
        before it writes the first job.

        Args:
            payloads: A list (or other iterable, not a str or a mapping) of
                JSON-serialisable payloads.
            delay: As for :meth:`enqueue`.

        Raises:
            TypeError: ``payloads`` is a str/bytes/mapping or not iterable, or
                a payload is not JSON-serialisable.
            ValueError: ``delay`` is out of range, or more payloads than
                ``max_length``.
            QueueFullError, WrongTypeError: As for :meth:`enqueue`.
        """
        if isinstance(payloads, str | bytes | Mapping) or not isinstance(
            payloads, Iterable
        ):
            raise TypeError(
                f"payloads={payloads!r:.80}: must be a list of payloads (a str or "
                "dict is one payload: use enqueue(), or wrap it in a list)"
            )
        delay_ms = round(check_seconds("delay", delay, max=YEAR, min_open=False) * 1000)
        encoded = [encode_payload(p) for p in payloads]
        if not encoded:
            return []
        if len(encoded) > self.max_length:
            raise ValueError(
                f"payloads: {len(encoded)} jobs in one batch; this queue holds at "
                f"most max_length={self.max_length}"
            )
        if not self._checked:  # once: refuse a stream that is not this queue's
            self._check_stream(self.client)
        ids = [os.urandom(16).hex() for _ in encoded]
        keys = [self.stream, self.delayed, self.stats, *map(self.job_key, ids)]
        args: list[str | int] = [
            delay_ms,
            self.max_attempts,
            round(self.backoff * 1000),
            round(self.max_backoff * 1000),
            self.max_length,
            GROUP,
        ]
        for job_id, data in zip(ids, encoded, strict=True):
            args += [job_id, data]
        try:
            direct.run(ENQUEUE, self.client, keys, args)
        except redis.ResponseError as exc:
            raise_script_error(exc, queue=self.name)
        self._checked = True  # the stream and its group exist now
        return ids

    # --- inspecting ---------------------------------------------------------
    def status(self, job_id: str) -> JobStatus | None:
        """The record of one job, or None if unknown (or expired after ``keep``).

        Raises:
            WrongTypeError: The record's key holds something labkit did not
                write.
        """
        key = self.job_key(check_name("job_id", job_id))
        try:
            rec: Any = decoded(self.client.hgetall(key))
        except redis.ResponseError as exc:
            raise_script_error(exc, queue=self.name, key=key)
        if not rec:
            return None
        try:
            return JobStatus(
                job_id,
                rec["state"],
                int(rec["attempts"]),
                int(rec.get("max_attempts", 0)),
                rec.get("error", ""),
            )
        except (KeyError, ValueError) as exc:
            raise WrongTypeError(
                f"key {key!r} does not hold a job record labkit wrote: {rec!r:.120}",
                key=key,
                found="hash without state/attempts",
                expected="a job record",
            ) from exc

    def counts(self) -> QueueCounts:
        """Jobs in each state and the running totals, read at one instant.

        One script call (read-only), so it works on a cluster too.
        """
        return read_counts(self, self.client)

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The oldest ``count`` (1 to 10000) dead letters: job, payload, attempts,
        error."""
        check_count("count", count, max=10_000)
        try:
            entries: Any = decoded(self.client.xrange(self.dead, count=count))
        except redis.ResponseError as exc:
            raise_script_error(exc, queue=self.name, key=self.dead)
        out = []
        for _entry_id, fields in entries:
            try:
                payload = json.loads(fields["payload"])
            except ValueError:
                payload = fields["payload"]  # an unreadable payload, kept as text
            out.append(
                {
                    "job": fields["job"],
                    "payload": payload,
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
            step: Names the effect when a job has several (may be empty).
            ttl: Seconds to remember the marker (1 s to a year; longer than
                any retry delay).
        """
        check_name("job_id", job_id)
        if not isinstance(step, str):
            raise TypeError(f"step={step!r}: must be a str (may be empty)")
        seconds = round(check_seconds("ttl", ttl, min=1, min_open=False))
        key = f"{self.base}:once:{key_part(job_id)}:{key_part(step)}"
        try:
            return bool(self.client.set(key, "1", nx=True, ex=seconds))
        except redis.ResponseError as exc:
            raise_script_error(exc, queue=self.name)
