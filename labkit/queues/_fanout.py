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

from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, NamedTuple

import redis

from labkit.queues._queue import Job, JobQueue

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
        client: A ``redis.Redis`` (``decode_responses=True``).
        prefix: Start of every key.
        ttl: Seconds to keep a job's completion record and part set.

    Keys (``P`` = ``<prefix>:{<job id>}``; the tag keeps both keys of a job in
    one cluster slot for the script):
        ``P:record`` (hash): ``total`` parts, and ``done`` once fired.
        ``P:parts`` (set): ids of the finished parts.
    """

    def __init__(
        self, client: redis.Redis, *, prefix: str = "lab:fanout", ttl: float = 86400
    ) -> None:
        if not isinstance(client, redis.Redis | redis.RedisCluster):
            raise TypeError(f"client={client!r}: must be a redis.Redis")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 1:
            raise ValueError(f"ttl={ttl!r}: must be a number of seconds >= 1")
        self.client = client
        self.prefix = prefix
        self.ttl = round(ttl)
        source = resources.files("labkit").joinpath("lua/queues_fanout_finish.lua")
        self._finish = client.register_script(source.read_text())

    def record_key(self, job_id: str) -> str:
        """The completion record of a job."""
        return f"{self.prefix}:{{{job_id}}}:record"

    def parts_key(self, job_id: str) -> str:
        """The set of finished part ids of a job."""
        return f"{self.prefix}:{{{job_id}}}:parts"

    def create(self, job_id: str, total: int) -> None:
        """Write the completion record of a job of ``total`` parts.

        Raises:
            ValueError: ``total`` < 1, or a record for ``job_id`` exists.
        """
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total={total!r}: must be an int >= 1")
        key = self.record_key(job_id)
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
        """
        self.create(job_id, len(parts))
        return queue.enqueue_many(
            {"fanout": job_id, "part": i, "data": part} for i, part in enumerate(parts)
        )

    def finish(self, job_id: str, part: int | str) -> PartResult:
        """Mark one part finished; ``done`` is True for the call that completes it.

        Raises:
            redis.ResponseError: There is no completion record for ``job_id``.
        """
        keys = [self.record_key(job_id), self.parts_key(job_id)]
        new, finished, total, fired = self._finish(keys=keys, args=[str(part)])
        return PartResult(bool(new), int(finished), int(total), bool(fired))

    def progress(self, job_id: str) -> tuple[int, int, bool]:
        """(parts finished, total parts, done) of a job; total is 0 if unknown."""
        pipe = self.client.pipeline(transaction=True)
        pipe.scard(self.parts_key(job_id))
        pipe.hgetall(self.record_key(job_id))
        finished, rec = pipe.execute()
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

        def handle(job: Job) -> None:
            work(job.payload["data"])
            if self.finish(job.payload["fanout"], job.payload["part"]).done:
                on_done(job.payload["fanout"])

        return handle
