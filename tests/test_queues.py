"""labkit.queues against a real server: crashes, retries, delays, bad input."""

from __future__ import annotations

import math
import threading
import time

import pytest
import redis

from labkit.lab.queues import WorkerProcesses, runs_key, try_queue
from labkit.queues import Job, JobQueue, Worker
from labkit.server import Server


def server_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def pending_by_worker(r: redis.Redis, q: JobQueue) -> dict[str, int]:
    """Unacknowledged jobs per consumer of the queue's group."""
    return {c["name"]: c["pending"] for c in r.xinfo_consumers(q.stream, "workers")}


def test_sigkill_mid_batch_loses_no_job() -> None:
    """1000 jobs, 3 worker processes, one SIGKILLed mid-batch: all done once acked."""
    with Server() as srv:
        r = srv.client(decode_responses=True)
        q = JobQueue(r, "crash", visibility_timeout=1)
        opts = ["--visibility", "1", "--batch", "10"]
        with WorkerProcesses(srv.url, "crash", 3, options=opts) as procs:
            deadline = time.monotonic() + 40
            while len(pending_by_worker(r, q)) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)  # all three workers are up
            ids = q.enqueue_many([{"sleep": 0.002}] * 1000)
            while time.monotonic() < deadline and not (
                r.hlen(runs_key(q.base)) >= 150
                and pending_by_worker(r, q)["proc-0"] >= 3
            ):
                # Mid-batch: proc-0 holds several unacknowledged jobs, so it
                # cannot ack them all in the instant between check and kill.
                time.sleep(0.002)
            procs.kill(0)
            held = {
                c["name"]: c["pending"] for c in r.xinfo_consumers(q.stream, "workers")
            }
            while q.counts().completed < 1000 and time.monotonic() < deadline:
                time.sleep(0.05)
        runs = {k: int(v) for k, v in r.hgetall(runs_key(q.base)).items()}
        counts = q.counts()
        duplicates = sum(runs.values()) - len(ids)
        print(f"held by the killed worker: {held['proc-0']}, duplicates: {duplicates}")
        assert held["proc-0"] > 0  # it died with jobs in hand
        assert set(runs) == set(ids)  # every job ran: none lost
        assert counts.completed == 1000 and counts.dead == 0
        assert counts.waiting == counts.running == counts.delayed == 0
        assert counts.recovered >= held["proc-0"]
        assert 0 <= duplicates <= held["proc-0"]  # only its unacked jobs re-ran
        assert all(q.status(i).state == "done" for i in ids)


def test_failing_job_is_dead_lettered_after_max_attempts(r: redis.Redis) -> None:
    """A job failing every time runs max_attempts times, waiting longer each time."""
    q = JobQueue(r, "fail", max_attempts=4, backoff=0.05, visibility_timeout=5)
    seen: list[tuple[int, int, int]] = []  # (server ms, due ms, backoff ms)

    def always_fail(job: Job) -> None:
        due, delay = job.queue.client.hmget(
            job.queue.job_key(job.id), "due_ms", "delay_ms"
        )
        seen.append((server_ms(job.queue.client), int(due), int(delay or 0)))
        raise RuntimeError(f"boom {job.attempt}")

    job_id = q.enqueue({"to": "ada@example.com"})
    Worker(q, always_fail, block=0.01).run(burst=True, timeout=20)
    assert len(seen) == 4
    assert [delay for _, _, delay in seen] == [0, 50, 100, 200]  # doubling
    assert all(now >= due for now, due, _ in seen)  # no attempt ran early
    dead = q.dead_letters()
    assert dead == [
        {
            "job": job_id,
            "payload": {"to": "ada@example.com"},
            "attempts": 4,
            "error": "RuntimeError: boom 4",
        }
    ]
    assert q.status(job_id).state == "dead"
    counts = q.counts()
    assert (counts.retried, counts.dead, counts.completed) == (3, 1, 0)


def test_retry_succeeds_before_max_attempts(r: redis.Redis) -> None:
    """A job that fails twice then succeeds is done, with three attempts."""
    q = JobQueue(r, "flaky", max_attempts=5, backoff=0.01)

    def flaky(job: Job) -> None:
        if job.attempt < 3:
            raise ConnectionError("smtp down")

    job_id = q.enqueue("x")
    Worker(q, flaky, block=0.01).run(burst=True, timeout=20)
    assert q.status(job_id) == (job_id, "done", 3, 5, "ConnectionError: smtp down")
    assert q.dead_letters() == []


def test_delayed_jobs_do_not_run_early(r: redis.Redis) -> None:
    """A delayed job runs only once the server clock reaches its due time."""
    q = JobQueue(r, "later")
    seen: dict[str, int] = {}
    job_ids = [q.enqueue({"n": i}, delay=0.1 * i) for i in range(4)]
    due = {j: int(r.hget(q.job_key(j), "due_ms")) for j in job_ids}

    def handler(job: Job) -> None:
        seen[job.id] = server_ms(r)

    assert q.counts().delayed == 3 and q.counts().waiting == 1
    Worker(q, handler, block=0.01).run(burst=True, timeout=20)
    assert set(seen) == set(job_ids)
    assert all(seen[j] >= due[j] for j in job_ids)
    assert [j for j, _ in sorted(seen.items(), key=lambda kv: kv[1])] == job_ids


def test_long_delayed_job_waits_while_a_due_one_runs(r: redis.Redis) -> None:
    """Of a job due in 0.1 s and one due in an hour, a worker runs only the first."""
    q = JobQueue(r, "due")
    soon, late = q.enqueue("soon", delay=0.1), q.enqueue("late", delay=3600)
    seen: dict[str, int] = {}
    Worker(q, lambda job: seen.setdefault(job.id, server_ms(r)), block=0.01).run(
        max_jobs=1, timeout=20
    )
    assert list(seen) == [soon] and seen[soon] >= int(r.hget(q.job_key(soon), "due_ms"))
    assert q.status(late).state == "delayed" and q.counts().delayed == 1


def test_try_queue_is_reproducible(r: redis.Redis) -> None:
    """The widget's experiment: same failures on every run, every job finished."""
    first = try_queue(r, "try-a", workers=2, fail_rate=0.3, job_ms=1, jobs=30)[1]
    second = try_queue(r, "try-b", workers=3, fail_rate=0.3, job_ms=1, jobs=30)[1]
    assert first.completed + first.dead == 30 and first.retried > 0
    assert first[3:] == second[3:]  # enqueued, completed, retried, dead, recovered


def test_dead_worker_jobs_are_recovered_after_visibility_timeout(
    r: redis.Redis,
) -> None:
    """Jobs read by a worker that never acks are claimed by another, not before."""
    q = JobQueue(r, "recover", visibility_timeout=0.3)
    ids = q.enqueue_many(range(5))
    r.xreadgroup("workers", "ghost", {q.stream: ">"}, count=5)  # reads, then dies
    done: list[tuple[str, int]] = []
    worker = Worker(q, lambda job: done.append((job.id, job.attempt)), block=0.01)
    assert worker.step() == 0  # nothing new, and nothing idle long enough yet
    worker.run(burst=True, timeout=20)
    assert sorted(done) == sorted((i, 1) for i in ids)
    assert q.counts().recovered == 5 and q.counts().completed == 5


def test_attempts_exhausted_by_crashes_goes_to_dead_letters(r: redis.Redis) -> None:
    """A job whose every attempt kills its worker is dead-lettered, not run again."""
    q = JobQueue(r, "poison", max_attempts=2, visibility_timeout=0.05)
    job_id = q.enqueue("poison")
    for name in ("crash-1", "crash-2"):
        r.xautoclaim(q.stream, "workers", name, 50)  # take it over, like a worker
        r.xreadgroup("workers", name, {q.stream: ">"}, count=1)
        r.hincrby(q.job_key(job_id), "attempts", 1)  # what a started attempt does
        time.sleep(0.06)
    ran: list[str] = []
    Worker(q, lambda job: ran.append(job.id), block=0.01).run(burst=True, timeout=10)
    assert ran == []
    assert q.dead_letters()[0]["error"] == "attempts exhausted by worker crashes"


def test_late_ack_of_a_recovered_job_counts_once(r: redis.Redis) -> None:
    """Two workers finishing the same delivery: completed counts it once."""
    q = JobQueue(r, "twice", visibility_timeout=0.05)
    q.enqueue("slow")
    gate = threading.Event()
    first = Worker(q, lambda job: gate.wait(5), name="slow", block=0.01)
    thread = threading.Thread(target=first.step)
    thread.start()
    deadline = time.monotonic() + 10
    while q.counts().running == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # until "slow" holds the job
    time.sleep(0.1)  # longer than the visibility timeout: the job looks abandoned
    second = Worker(q, lambda job: None, name="fast", block=0.01)
    assert second.step() == 1
    gate.set()
    thread.join(5)
    assert first.late_acks == 1 and q.counts().completed == 1


def test_once_is_true_only_the_first_time(r: redis.Redis) -> None:
    """The idempotency helper answers True once per job and step."""
    q = JobQueue(r, "idem")
    job_id = q.enqueue({})
    assert q.once(job_id, "email") is True
    assert q.once(job_id, "email") is False
    assert q.once(job_id, "sms") is True


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts=0"),
        ({"max_attempts": 1.5}, TypeError, "max_attempts=1.5"),
        ({"backoff": -1}, ValueError, "backoff=-1"),
        ({"visibility_timeout": 0}, ValueError, "visibility_timeout=0"),
        ({"keep": math.inf}, ValueError, "keep=inf"),
    ],
)
def test_bad_queue_arguments_are_refused(
    r: redis.Redis, kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    """Out-of-range settings raise an error naming the argument and value."""
    with pytest.raises(error, match=words):
        JobQueue(r, "bad", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "delay", "error", "words"),
    [
        ({"n": 1}, -1, ValueError, "delay=-1"),
        ({"n": 1}, math.nan, ValueError, "delay=nan"),
        ({"n": 1}, "1", TypeError, "delay='1'"),
        ({"when": object()}, 0, TypeError, "JSON-serialisable"),
        ({1, 2}, 0, TypeError, "payload=\\{1, 2\\}"),
        (math.inf, 0, TypeError, "JSON-serialisable"),
    ],
)
def test_bad_enqueue_arguments_are_refused(
    r: redis.Redis, payload: object, delay: object, error: type[Exception], words: str
) -> None:
    """A negative delay or a payload JSON cannot hold raises before any write."""
    q = JobQueue(r, "bad")
    with pytest.raises(error, match=words):
        q.enqueue(payload, delay=delay)  # type: ignore[arg-type]
    assert q.counts().enqueued == 0
