"""Worker: read jobs with XREADGROUP, run the handler, ack or retry, recover."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from labkit.core.args import DAY, check_callable, check_count, check_name, check_seconds
from labkit.core.clients import client_like, decoded
from labkit.core.direct import Direct
from labkit.core.scripts import Arg, Script, run_batch
from labkit.errors import WorkerError
from labkit.queues._queue import GROUP, Job, JobQueue, read_counts
from labkit.queues._scripts import FAIL, LEAVE, NEXT, PROMOTE, raise_script_error

__all__ = ["TRANSIENT", "Handler", "Worker", "bounded_client"]

Handler = Callable[[Job], Any]


_SERVER_TICK_MS = 100  # 1000 / the server's default hz
#: Errors after which the server may answer again: a restart, a freeze, a
#: failover (a demoted primary answers READONLY), a resharded slot (MOVED).
TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MovedError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
)

Call = tuple[Script, list[str], list[Arg]]


def bounded_client(
    client: redis.Redis | redis.RedisCluster, key: str, timeout: float
) -> redis.Redis:
    """A ``redis.Redis`` of its own for the node holding ``key``: every call
    bounded by ``timeout`` seconds (connecting included), no retries.

    A worker must not hang on a frozen server, whatever socket timeout and
    retry policy the caller's client has (redis-py retries a timed-out call
    three times by default), and its blocking reads must not share a pool
    that the application may have sized for other work. On a cluster every
    key of a queue shares one slot, so the worker talks to that slot's node.

    Copies the caller's connection settings (host, port, password, TLS,
    db...) with :func:`labkit.core.clients.client_like`
    (``tests/test_queues.py`` checks the copy). A pool of another kind
    (Sentinel's, whose connections find the primary themselves) cannot be
    copied this way: the caller's client is then used as it is, and its own
    socket timeout is what bounds a call.
    """
    node: redis.Redis = (
        client.get_node_from_key(key).redis_connection  # type: ignore[no-untyped-call]
        if isinstance(client, redis.RedisCluster)
        else client
    )
    own = client_like(
        node,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return node if own is None else own


class Worker:
    """One consumer of a :class:`JobQueue`: runs jobs and acknowledges them.

    Args:
        queue: The queue to work on.
        handler: Called with each :class:`Job`; returning means success, an
            exception means failure (retry with backoff, then dead letter).
        name: Consumer name in the group; by default ``host-pid-n``. Names
            must be unique among live workers; a worker restarted under its
            old name first finishes the entries it held when it stopped.
        batch: Entries read per XREADGROUP (1 to 1000). Larger batches make
            fewer round trips; an entry waiting in a batch can be taken over
            by another worker once idle for the visibility timeout, and is
            then skipped here, not run twice.
        block: Longest wait for new jobs when the stream is empty, in
            seconds. A new job ends the wait at once; waits shorter than the
            server's timer tick (100 ms) are done by polling.
        server_timeout: Seconds any one call to the server may take (0.1 to
            60): on a frozen server a call fails after this long.
        patience: Seconds the worker keeps retrying while its server does not
            answer (a restart, a failover) before :meth:`run` raises
            :class:`~labkit.errors.WorkerError`.

    Lifecycle: the constructor does no I/O. :meth:`start` joins the consumer
    group (:meth:`run` and :meth:`step` do it if needed); :meth:`close`
    leaves it and closes the worker's connection; ``with Worker(...) as w:``
    does both. The worker starts no thread: :meth:`run` works in the caller's.

    Each step of the loop (1) moves due delayed jobs into the stream, (2) now
    and then takes over entries left unacknowledged for longer than
    ``queue.visibility_timeout`` (XAUTOCLAIM: their worker died or hangs), and
    (3) reads new entries. Each job is started (one attempt charged, its idle
    time reset) just before its handler runs, and acknowledged (XACK, then
    XDEL) only after the handler returned: a crash costs an attempt of the job
    that was running and no other, and can make that job run twice, never
    zero times. One round trip sends a job's acknowledgement and the next
    job's start.

    A worker that joins under a fresh name, once its first full claim pass is
    done, removes the group's consumers idle for more than ``REAP_AFTER`` (10)
    visibility timeouts that hold no entries (crashed workers' leftovers), and
    lists their names in :attr:`reaped`.
    """

    _count = 0
    #: A consumer idle this many visibility timeouts, holding nothing, is a
    #: crashed worker's leftover: a worker starting under a fresh name removes it.
    REAP_AFTER = 10

    def __init__(
        self,
        queue: JobQueue,
        handler: Handler,
        *,
        name: str | None = None,
        batch: int = 10,
        block: float = 1.0,
        server_timeout: float = 5.0,
        patience: float = 30.0,
    ) -> None:
        if not isinstance(queue, JobQueue):
            raise TypeError(f"queue={queue!r}: must be a labkit.queues.JobQueue")
        check_callable("handler", handler, signature="called with a Job")
        Worker._count += 1
        self.queue = queue
        self.handler = handler
        if name is None:
            name = f"{socket.gethostname()}-{os.getpid()}-{Worker._count}"
        self.name = check_name("name", name, max_len=200)
        self.batch = check_count("batch", batch, max=1000)
        self.block = check_seconds("block", block, min=0.001, max=DAY, min_open=False)
        self.server_timeout = check_seconds(
            "server_timeout", server_timeout, min=0.1, max=60, min_open=False
        )
        self.patience = check_seconds("patience", patience, max=DAY, min_open=False)
        self.processed = 0  #: handler calls made by this worker
        self.failed = 0  #: handler calls that raised
        self.late_acks = 0  #: successes already acknowledged elsewhere
        self.skipped = 0  #: entries another worker had taken over before they ran
        self.errors = 0  #: calls to the server that failed (connection, timeout)
        self.last_error: BaseException | None = None  #: the latest such failure
        self.down_seconds = 0.0  #: total time the server did not answer
        self._stop = threading.Event()
        self._last_claim = 0.0
        self._claim_cursor = "0-0"
        self._own_cursor: str | None = "0"  # re-read own pending entries first
        self.reaped: list[str] = []  #: idle, empty consumers this worker removed
        self._conn: redis.Redis | None = None
        self._next_call: Direct | None = None
        self._promote_call: Direct | None = None
        #: The queue's client decodes replies (then the worker's does too).
        self._decodes = bool(queue.client.get_encoder().decode_responses)
        self._fresh: bool | None = None  # None until start() joined the group

    def __repr__(self) -> str:
        return f"<Worker {self.name!r} on {self.queue.name!r}>"

    # --- the connection -----------------------------------------------------
    def _client(self) -> redis.Redis:
        if self._conn is None:
            self._conn = bounded_client(
                self.queue.client, self.queue.stream, self.server_timeout
            )
        return self._conn

    def _reset_connection(self) -> None:
        if self._conn is not None and self._conn is not self.queue.client:
            self._conn.connection_pool.disconnect()
        self._conn = None

    # --- the lifecycle --------------------------------------------------------
    def start(self) -> Worker:
        """Join the consumer group (the first I/O of a worker); returns self.

        :meth:`run` and :meth:`step` call it if it was not called. Creates the
        stream and its group if needed (see :meth:`JobQueue.ensure_group`).

        Raises:
            WrongTypeError: The stream's key holds another type or someone
                else's stream.
        """
        if self._fresh is None:
            self._fresh = self._join()
        return self

    def close(self) -> None:
        """Stop, leave the group (unless holding entries) and close the
        worker's own connection. A closed worker can be started again."""
        self.stop()
        if self._fresh is not None:
            with contextlib.suppress(redis.RedisError):
                self.leave()
        self._fresh = None
        self._reset_connection()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _join(self) -> bool:
        """Join the group; True if under a fresh name (not a restarted worker)."""
        q, conn = self.queue, self._client()
        q.ensure_group(conn)  # the stream and group exist, and are the queue's
        return bool(conn.xgroup_createconsumer(q.stream, GROUP, self.name))

    def _reap(self, conn: redis.Redis) -> None:
        """Remove consumers idle for REAP_AFTER visibility timeouts that hold nothing.

        A crashed worker's consumer stays in the group for good (every crash
        under a fresh name adds one), and XINFO, monitoring and XAUTOCLAIM all
        walk past it. Run once, by a worker that joined under a fresh name,
        after its first full claim pass took the entries such consumers held.
        The removal re-checks, atomically, that the consumer holds nothing
        (queues_leave.lua), so a consumer that just read an entry stays.
        """
        q = self.queue
        limit_ms = self.REAP_AFTER * q.visibility_timeout * 1000
        for info in decoded(conn.xinfo_consumers(q.stream, GROUP)):
            name = str(info["name"])
            if name == self.name or info["pending"] or info["idle"] < limit_ms:
                continue
            if LEAVE(conn, [q.stream], [GROUP, name]):
                self.reaped.append(name)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the job in hand."""
        self._stop.set()

    def leave(self) -> bool:
        """Leave the consumer group, unless this worker still holds entries.

        A consumer holding entries stays, so that they can be taken over
        (deleting it would drop them from the group for good).

        Returns:
            True if the consumer was removed.
        """
        q = self.queue
        return bool(LEAVE(self._client(), [q.stream], [GROUP, self.name]))

    # --- one step -----------------------------------------------------------
    def step(self) -> int:
        """Do one round: promote, maybe recover, read and run. Returns jobs run."""
        return self._step(None, None)

    def _step(self, deadline: float | None, max_jobs: int | None) -> int:
        if self._fresh is None:
            self.start()  # in the loop: a server that is not up yet is waited for
        q, conn = self.queue, self._client()
        count = self.batch if max_jobs is None else min(self.batch, max_jobs)
        entries: list[tuple[str, Any]] = []
        next_due_ms = -1
        if self._own_cursor is not None:
            # After a restart or an error: first the entries this consumer was
            # delivered and never acknowledged (XREADGROUP ... 0).
            entries = self._read(conn, self._own_cursor, 0, count)
            self._own_cursor = entries[-1][0] if len(entries) == count else None
            entries = self._drop_deleted(conn, entries)
        if not entries:
            try:
                self._next(conn)
                assert self._promote_call is not None
                _moved, next_due_ms = self._promote_call(100)
            except redis.ResponseError as exc:
                raise_script_error(exc, queue=q.name)
            entries = self._recover(conn, count)
        if not entries:
            # Wake up in time for the next delayed job, the next claim check
            # and the deadline, and within the server timeout.
            now = time.monotonic()
            claim_in = self._last_claim + q.visibility_timeout / 4 - now
            wait = min(self.block, claim_in, self.server_timeout / 2)
            if next_due_ms >= 0:
                wait = min(wait, next_due_ms / 1000)
            if deadline is not None:
                wait = min(wait, deadline - now)
            entries = self._read(conn, ">", max(1, round(wait * 1000)), count)
        return self._run_entries(conn, entries, deadline)

    def _read(
        self, conn: redis.Redis, start: str, wait_ms: int, count: int
    ) -> list[tuple[str, Any]]:
        q = self.queue
        # The server checks blocking timeouts only `hz` times a second (10 by
        # default), so BLOCK 10 can last 100 ms. Short waits poll instead.
        polling = start != ">" or wait_ms < _SERVER_TICK_MS
        try:
            reply: Any = conn.xreadgroup(
                GROUP,
                self.name,
                {q.stream: start},
                count=count,
                block=None if polling else wait_ms,
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise_script_error(exc, queue=q.name)
            q.ensure_group(conn)  # the stream was deleted (flushed) under us
            return []
        if not reply and polling and start == ">":
            self._stop.wait(wait_ms / 1000)
        if not reply:
            return []
        return list(reply[0][1] if self._decodes else decoded(reply[0][1]))

    def _drop_deleted(
        self, conn: redis.Redis, entries: list[tuple[str, Any]]
    ) -> list[tuple[str, Any]]:
        """Acknowledge own pending entries deleted from the stream (trimmed)."""
        gone = [eid for eid, fields in entries if not fields]
        if gone:
            q = self.queue
            pipe = conn.pipeline(transaction=False)
            pipe.xack(q.stream, GROUP, *gone)
            pipe.hincrby(q.stats, "lost", len(gone))
            pipe.execute()
        return [(eid, fields) for eid, fields in entries if fields]

    def _recover(self, conn: redis.Redis, count: int) -> list[tuple[str, Any]]:
        q = self.queue
        now = time.monotonic()
        if now - self._last_claim < q.visibility_timeout / 4:
            return []
        self._last_claim = now
        cursor, entries, *rest = decoded(
            conn.xautoclaim(
                q.stream,
                GROUP,
                self.name,
                min_idle_time=round(q.visibility_timeout * 1000),
                start_id=self._claim_cursor,
                count=count,
            )
        )
        self._claim_cursor = cursor
        deleted = rest[0] if rest else []
        entries = [(eid, fields) for eid, fields in entries if fields]
        if self._fresh and cursor == "0-0" and not entries and not deleted:
            self._fresh = False  # a full claim pass is done: reap, once
            self._reap(conn)
        if entries or deleted:
            self._last_claim = 0.0  # there may be more: look again next step
            pipe = conn.pipeline(transaction=False)
            pipe.hincrby(q.stats, "recovered", len(entries))
            pipe.hincrby(q.stats, "lost", len(deleted))
            pipe.execute()
        return entries

    # --- running jobs -------------------------------------------------------
    def _next(self, conn: redis.Redis) -> Direct:
        """queues_next.lua on ``conn``, its call packed once per connection."""
        if self._next_call is None or self._next_call.client is not conn:
            q = self.queue
            self._next_call = Direct(NEXT, conn, [q.stream, q.stats], 7, more_keys=2)
            self._promote_call = Direct(PROMOTE, conn, [q.delayed, q.stream], 1)
        return self._next_call

    def _next_args(
        self, done: tuple[str, dict[str, str]] | None, eid: str, fields: dict[str, str]
    ) -> list[Arg]:
        """queues_next.lua's keys and args after ``KEYS[1..2]``: acknowledge
        ``done`` (an entry, or None), start ``eid`` (or nothing if '')."""
        q = self.queue
        done_eid, done_key = "", q.stats
        if done is not None:
            done_eid, done_key = done[0], q.job_key(done[1].get("job") or done[0])
        job_key = q.job_key(fields.get("job") or eid) if eid else q.stats
        return [done_key, job_key, GROUP, self.name, done_eid, q.keep, eid]

    def _fail_call(
        self, eid: str, fields: dict[str, str], error: str, poison: bool = False
    ) -> Call:
        q = self.queue
        job_id = fields.get("job") or eid
        keys = [q.stream, q.delayed, q.dead, q.job_key(job_id), q.stats]
        args: list[Arg] = [
            GROUP,
            eid,
            job_id,
            error[:500],
            fields.get("payload", "null"),
            q.keep_dead,
            q.max_dead,
            int(poison),
        ]
        return FAIL, keys, args

    def _batch(self, conn: redis.Redis, calls: list[Call]) -> list[Any]:
        try:
            replies: list[Any] = decoded(run_batch(conn, calls))
        except redis.ResponseError as exc:
            raise_script_error(exc, queue=self.queue.name)
        return replies

    def _run_entries(
        self,
        conn: redis.Redis,
        entries: list[tuple[str, dict[str, str]]],
        deadline: float | None,
    ) -> int:
        ran = 0
        # What the previous job left to send: its entry to acknowledge (sent
        # with the next job's start, one script call), or its failure.
        done: tuple[str, dict[str, str]] | None = None
        fail: Call | None = None
        for eid, fields in entries:
            stopping = self._stop.is_set() or (
                deadline is not None and time.monotonic() >= deadline
            )
            if stopping:
                # Read but not started: re-read them (XREADGROUP ... 0) next
                # time, or another worker takes them over after the timeout.
                self._own_cursor = "0"
                break
            if fail is None:
                reply = self._call_next(conn, done, eid, fields)
            else:  # the failure and this start: one pipeline round trip
                args = self._next_args(None, eid, fields)
                keys = [self.queue.stream, self.queue.stats, *map(str, args[:2])]
                text = self._batch(conn, [fail, (NEXT, keys, args[2:])])[1]
                reply = [int(x) for x in text.split()]
            if done is not None and not reply[0]:
                self.late_acks += 1
            done, fail = None, None
            attempt, max_attempts, deliveries = reply[1:]
            if attempt == -1:  # another worker took it over while it waited
                self.skipped += 1
                continue
            if attempt == 0:
                error = "job record missing (expired or deleted) when it was started"
                fail = self._fail_call(eid, fields, error, poison=True)
                continue
            if attempt > max_attempts:  # it kept killing its workers
                error = (
                    f"attempts used up by worker crashes ({deliveries} deliveries, "
                    f"max_attempts={max_attempts})"
                )
                fail = self._fail_call(eid, fields, error, poison=True)
                continue
            try:
                payload = json.loads(fields["payload"])
            except (KeyError, ValueError) as exc:
                error = f"unreadable entry {dict(fields)!r:.200}: {exc}"
                fail = self._fail_call(eid, fields, error, poison=True)
                continue
            job = Job(
                fields["job"], payload, attempt, eid, self.queue, self.name, deliveries
            )
            ran += 1
            self.processed += 1
            try:
                self.handler(job)
            except Exception as exc:  # any handler error is a failed attempt
                self.failed += 1
                fail = self._fail_call(eid, fields, f"{type(exc).__name__}: {exc}")
            else:
                done = (eid, fields)
        if fail is not None:
            self._batch(conn, [fail])
        elif done is not None and not self._call_next(conn, done, "", {})[0]:
            self.late_acks += 1
        return ran

    def _call_next(
        self,
        conn: redis.Redis,
        done: tuple[str, dict[str, str]] | None,
        eid: str,
        fields: dict[str, str],
    ) -> list[int]:
        try:
            reply = self._next(conn)(*self._next_args(done, eid, fields))
        except redis.ResponseError as exc:
            raise_script_error(exc, queue=self.queue.name)
        return [int(x) for x in reply.split()]

    # --- the loop -----------------------------------------------------------
    def run(
        self,
        *,
        burst: bool = False,
        max_jobs: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Work until stopped; returns the number of handler calls made.

        Args:
            burst: Return once the queue is drained (nothing waiting, running
                or delayed), for batch runs and tests.
            max_jobs: Return after this many handler calls (1 to 2**31 - 1).
            timeout: Return after this many seconds, drained or not (up to a
                day). It holds on a frozen server too: the last call then
                fails within ``server_timeout``.

        Raises:
            WorkerError: The server did not answer for ``patience`` seconds,
                or still did not at the deadline (``__cause__`` holds the last
                error). Errors raised by the handler never end the loop: they
                fail the job.
        """
        if not isinstance(burst, bool):
            raise TypeError(f"burst={burst!r}: must be True or False")
        if max_jobs is not None:
            check_count("max_jobs", max_jobs)
        if timeout is not None:
            check_seconds("timeout", timeout, max=DAY, min_open=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        start = self.processed
        down_since: float | None = None
        pause = 0.05
        self._stop.clear()
        try:
            while not self._stop.is_set():
                left = None if max_jobs is None else max_jobs - (self.processed - start)
                try:
                    ran = self._step(deadline, left)
                    drained = burst and ran == 0 and self._drained()
                except TRANSIENT as exc:
                    down_since, pause = self._failed_call(exc, down_since, pause)
                    if deadline is not None and time.monotonic() >= deadline:
                        self._give_up(exc, down_since, "at the run's deadline")
                    wait = (
                        pause
                        if deadline is None
                        else min(pause, deadline - time.monotonic())
                    )
                    self._stop.wait(max(0.0, wait))
                    continue
                if down_since is not None:
                    self.down_seconds += time.monotonic() - down_since
                    down_since, pause = None, 0.05
                if max_jobs is not None and self.processed - start >= max_jobs:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if drained:
                    break
        finally:
            if down_since is None:  # else the server is away: stay, as after a crash
                with contextlib.suppress(redis.RedisError):
                    self.leave()
            else:
                self._reset_connection()
            # else the connection is kept for the next run: close() closes it
        return self.processed - start

    def _drained(self) -> bool:
        c = read_counts(self.queue, self._client())  # through the bounded connection
        return c.waiting + c.running + c.delayed == 0

    def _failed_call(
        self, exc: BaseException, down_since: float | None, pause: float
    ) -> tuple[float, float]:
        self.errors += 1
        self.last_error = exc
        self._own_cursor = "0"  # what was in hand is re-read once back
        self._reset_connection()  # reconnect (and re-find a cluster node)
        now = time.monotonic()
        if down_since is None:
            return now, pause
        if now - down_since >= self.patience:
            self._give_up(exc, down_since, f"for patience={self.patience:g} s")
        return down_since, min(pause * 2, 1.0)

    def _give_up(self, exc: BaseException, down_since: float, why: str) -> None:
        down = time.monotonic() - down_since
        raise WorkerError(
            f"worker {self.name!r} of queue {self.queue.name!r}: the server has not "
            f"answered for {down:.1f} s ({why}); last error: "
            f"{type(exc).__name__}: {exc}",
            worker=self.name,
            queue=self.queue.name,
        ) from exc
