"""labkit.queues.FanOut: the join fires exactly once, whatever the delivery order."""

from __future__ import annotations

import random
import threading

import pytest
import redis

from labkit.core.scripts import Script
from labkit.errors import UnknownFanOutError
from labkit.queues import FanOut, JobQueue, PartResult, Worker


def test_done_fires_once_with_every_part_delivered_twice(r: redis.Redis) -> None:
    """20 parts each finished twice by 4 threads: exactly one call sees done."""
    fan = FanOut(r)
    fan.create("report", 20)
    deliveries = [p for p in range(20) for _ in range(2)]
    random.Random(7).shuffle(deliveries)
    results: list[PartResult] = []
    lock = threading.Lock()

    def finish(parts: list[int]) -> None:
        for part in parts:
            res = fan.finish("report", part)
            with lock:
                results.append(res)

    threads = [
        threading.Thread(target=finish, args=(deliveries[i::4],)) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(res.done for res in results) == 1
    assert sum(res.new for res in results) == 20
    done = next(res for res in results if res.done)
    assert done.finished == done.total == 20
    assert fan.progress("report") == (20, 20, True)


def test_split_through_the_queue_with_duplicate_parts(r: redis.Redis) -> None:
    """Parts enqueued twice and run by two workers: on_done runs once, at the end."""
    fan = FanOut(r)
    q = JobQueue(r, "parts")
    processed: list[int] = []
    joined: list[tuple[str, int]] = []
    handler = fan.handler(
        processed.append, lambda job: joined.append((job, len(set(processed))))
    )
    fan.split(q, "big", list(range(10)))
    q.enqueue_many({"fanout": "big", "part": i, "data": i} for i in (2, 5, 9))
    workers = [Worker(q, handler, name=f"w{i}", block=0.01) for i in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={"burst": True}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(processed) == 13 and sorted(set(processed)) == list(range(10))
    assert joined == [("big", 10)]


def test_record_exists_before_any_part_is_published(r: redis.Redis) -> None:
    """split() writes the completion record first; a second split is refused."""
    fan = FanOut(r)
    q = JobQueue(r, "order")
    fan.split(q, "job-1", ["a", "b"])
    assert fan.progress("job-1") == (0, 2, False)
    assert q.counts().waiting == 2
    with pytest.raises(ValueError, match="job_id='job-1'"):
        fan.split(q, "job-1", ["a", "b"])
    assert q.counts().waiting == 2


def test_finishing_a_part_of_an_unknown_job_fails(r: redis.Redis) -> None:
    """A part whose job has no completion record raises instead of counting."""
    with pytest.raises(UnknownFanOutError, match="'nobody'") as info:
        FanOut(r).finish("nobody", 0)
    assert info.value.job_id == "nobody" and r.dbsize() == 0


def test_parts_expire_with_their_record(r: redis.Redis) -> None:
    """The part set expires at the record's instant, exactly: both go together."""
    fan = FanOut(r, ttl=60)
    for job in (f"j{n}" for n in range(100)):  # a PTTL/PEXPIRE pair missed by 1 ms
        fan.create(job, 2)
        r.expire(fan.record_key(job), 30)
        for part in range(2):
            fan.finish(job, part)
            at = r.pexpiretime(fan.record_key(job))
            assert r.pexpiretime(fan.parts_key(job)) == at > 0


def test_finish_script_is_printable(r: redis.Redis) -> None:
    """The script the notebook prints is the one finish() runs."""
    assert FanOut(r).script.sha == Script("queues_fanout_finish").sha
    assert (
        "KEYS[2]: set, ids of finished parts" in Script("queues_fanout_finish").source
    )
