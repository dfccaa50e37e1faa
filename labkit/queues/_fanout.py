"""Fan-out / join: split a job into parts, detect "all parts done" exactly once.

The tutorial version sets a counter to N and decrements it per finished part.
It breaks two ways: if the counter is set after the parts are published, a
fast worker decrements a missing key (to -1) and the job never reaches 0; and
a part delivered twice (at-least-once queues do that after a crash)
decrements twice, so "done" fires before the last part has finished. Here the
completion record is written before any part is published, and finished parts
go into a set: adding a part id a second time changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from labkit.core.args import (
    YEAR,
    Key,
    check_callable,
    check_count,
    check_key,
    check_seconds,
    check_tag,
)
from labkit.core.clients import check_client, decoded
from labkit.core.keys import key_part
from labkit.core.scripts import Script
from labkit.errors import LabkitError
from labkit.queues._queue import Job, JobQueue
from labkit.queues._scripts import encode_payload, raise_script_error

FINISH = Script("queues_fanout_finish")

__all__ = ["FanOut", "PartResult"]


class PartResult(NamedTuple):
    """What :meth:`FanOut.finish` did.

    Attributes:
        new: False if this part had already been marked finished (a duplicate).
        finished: Distinct parts finished so far.
        total: Parts in the job.
        done: True for exactly one call per job: the one that finished its
            last part.
    """

    new: bool
    finished: int
    total: int
    done: bool


class FanOut:
    """Completion tracking for jobs split into parts.

    Args:
        client: A ``redis.Redis`` or ``redis.RedisCluster``, with or without
            ``decode_responses`` (replies are decoded here).
        prefix: Start of every key (no braces).
        ttl: Seconds to keep a job's completion record and part set (1 s to a
            year), counted from :meth:`create`.

    Keys (one cluster slot per job: the job id is their hash tag):
        ``<prefix>:{<job id>}:record`` (hash): the number of parts (total),
        and done once fired; it expires ttl seconds after create().
        ``<prefix>:{<job id>}:parts`` (set): ids of the finished parts; expires
        with the record.

    Every script checks the keys' types and the record before its first write.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        prefix: str = "labkit:fanout",
        ttl: float = 86400,
    ) -> None:
        self.client = check_client(client, owner="FanOut")
        self.prefix = check_tag("prefix", prefix)
        self.ttl = round(check_seconds("ttl", ttl, min=1, max=YEAR, min_open=False))
        #: The script :meth:`finish` runs (``print(fan.script.source)``).
        self.script = FINISH

    def record_key(self, job_id: str) -> str:
        """The completion record of a job."""
        return f"{self.prefix}:{{{key_part(check_tag('job_id', job_id))}}}:record"

    def parts_key(self, job_id: str) -> str:
        """The set of finished part ids of a job."""
        return f"{self.prefix}:{{{key_part(check_tag('job_id', job_id))}}}:parts"

    def create(self, job_id: str, total: int) -> None:
        """Write the completion record of a job of ``total`` parts.

        Args:
            job_id: Names the job; it becomes the keys' hash tag (non-empty,
                no braces).
            total: Parts in the job (1 to 1000000).

        Raises:
            ValueError: ``total`` out of range, or a record for ``job_id``
                exists.
            WrongTypeError: The record's key holds another type of value.
        """
        key = self.record_key(job_id)
        check_count("total", total, max=1_000_000)
        pipe = self.client.pipeline(transaction=False)
        pipe.type(key)
        pipe.type(self.parts_key(job_id))
        found = decoded(pipe.execute())
        if found != ["none", "none"]:
            if found[0] == "hash":
                raise ValueError(
                    f"job_id={job_id!r}: a completion record already exists"
                )
            bad = next(t for t in found if t not in ("none", "hash"))
            raise_script_error(redis.ResponseError(f"BADTYPE {key} {bad} hash"))
        # HSET and EXPIRE in one MULTI: the record never exists without a TTL.
        pipe = self.client.pipeline(transaction=True)
        pipe.hsetnx(key, "total", total)
        pipe.expire(key, self.ttl, nx=True)
        created, _ = pipe.execute()
        if not created:
            raise ValueError(f"job_id={job_id!r}: a completion record already exists")

    def split(self, queue: JobQueue, job_id: str, parts: Sequence[Any]) -> list[str]:
        """Create the completion record, *then* enqueue one job per part.

        Each part job's payload is ``{"fanout": job_id, "part": i, "data": part}``.
        Returns the part jobs' ids.

        Raises:
            TypeError: ``parts`` is a str, bytes or mapping (one value, not a
                list of parts), or ``queue`` is not a JobQueue.
            ValueError, QueueFullError, WrongTypeError: The queue refused the
                parts (more than its max_length, or full); the completion
                record is deleted again, so nothing is left behind.
        """
        if not isinstance(queue, JobQueue):
            raise TypeError(f"queue={queue!r}: must be a labkit.queues.JobQueue")
        if isinstance(parts, str | bytes | Mapping) or not isinstance(parts, Sequence):
            raise TypeError(
                f"parts={parts!r:.80}: must be a list of parts (a str is one "
                "value: wrap it in a list)"
            )
        for part in parts:
            encode_payload(part)  # refuse a part JSON cannot hold before writing
        self.create(job_id, len(parts))
        jobs = [{"fanout": job_id, "part": i, "data": p} for i, p in enumerate(parts)]
        try:
            return queue.enqueue_many(jobs)
        except (LabkitError, redis.ResponseError, ValueError):
            # enqueue_many is one script: refused, it enqueued nothing. Take the
            # record back too, or a retry finds "a completion record already
            # exists". (A timeout is not a refusal: the parts may be queued.)
            self.client.delete(self.record_key(job_id))
            raise

    def finish(self, job_id: str, part: Key) -> PartResult:
        """Mark one part finished; ``done`` is True for the call that completes it.

        Raises:
            UnknownFanOutError: There is no completion record for ``job_id``
                (never created, or expired); nothing is written.
            WrongTypeError: A key holds another type of value.
        """
        keys = [self.record_key(job_id), self.parts_key(job_id)]
        part = check_key("part", part)
        try:
            new, finished, total, fired = FINISH(self.client, keys, [part])
        except redis.ResponseError as exc:
            raise_script_error(exc)
        return PartResult(bool(new), int(finished), int(total), bool(fired))

    def progress(self, job_id: str) -> tuple[int, int, bool]:
        """(parts finished, total parts, done) of a job; total is 0 if unknown."""
        pipe = self.client.pipeline(transaction=False)
        pipe.scard(self.parts_key(job_id))
        pipe.hgetall(self.record_key(job_id))
        try:
            finished, rec = decoded(pipe.execute())
        except redis.ResponseError as exc:
            raise_script_error(exc)
        return int(finished), int(rec.get("total", 0)), rec.get("done") == "1"

    def handler(
        self, work: Callable[[Any], Any], on_done: Callable[[str], Any]
    ) -> Callable[[Job], None]:
        """A queue handler for part jobs: ``work(data)``, then mark the part.

        ``on_done(job_id)`` is called by whichever worker finishes the last
        part, once per job, however often parts are delivered. It runs after
        the part is marked, so a worker that dies between the two leaves the
        job marked done with ``on_done`` not called: :meth:`progress` shows it.
        """
        check_callable("work", work, signature="called with a part's data")
        check_callable("on_done", on_done, signature="called with the job id")

        def handle(job: Job) -> None:
            work(job.payload["data"])
            if self.finish(job.payload["fanout"], job.payload["part"]).done:
                on_done(job.payload["fanout"])

        return handle
