"""Fan-out: one channel, many subscribers; what the server and the subscribers pay.

:class:`FanoutSubscribers` is the harness: it starts ``n`` subscribers on one
channel, either as child processes that each read their share of the
connections with one ``selectors`` loop (cheap to run: no thread, no redis-py),
or as one :class:`~labkit.pubsub.Subscriber` thread each in this process. The
caller publishes (the notebook shows that loop) and calls :meth:`wait_for` after
each message. :func:`server_cpu` reads the server's own CPU time (its main
thread, from ``INFO cpu``) and ``PUBLISH``'s ``INFO commandstats``, so the
server's share is measured on the server. :func:`measure_fanout` runs the whole
loop, for tests and benchmarks.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import redis

from labkit.core.args import check_choice, check_count, check_name, check_seconds
from labkit.pubsub import Received, Subscriber
from labkit.server import fresh_client, spawn

__all__ = [
    "MODES",
    "CpuSample",
    "FanoutResult",
    "FanoutSubscribers",
    "child_loop",
    "measure_fanout",
    "publish_cost",
    "server_cpu",
]

MODES = ("processes", "threads")
_CHILD = Path(__file__).with_name("_listen_child.py")


class CpuSample(NamedTuple):
    """The server's counters at one instant (see :func:`server_cpu`).

    Attributes:
        cpu: Seconds of CPU (user + system) its main thread has used.
        calls: ``PUBLISH`` calls so far (``INFO commandstats``).
        usec: Microseconds spent inside those calls (the same line).
    """

    cpu: float
    calls: int
    usec: int


def child_loop() -> str:
    """The source of the subscriber processes' reading loop (``mode="processes"``).

    The child (``_listen_child.py``) runs as a script of its own; this is the
    part of its ``main()`` that reads every connection with one selectors loop
    and reports ``got <i>`` once message ``i`` has reached all of them.
    """
    src = _CHILD.read_text()
    return src[src.index("    while reported") : src.index("    for sock in socks")]


def publish_cost(client: redis.Redis) -> tuple[int, int]:
    """``(calls, usec)`` of ``PUBLISH`` so far, from ``INFO commandstats``."""
    stats = client.info("commandstats").get("cmdstat_publish", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def server_cpu(client: redis.Redis) -> CpuSample:
    """The server's main-thread CPU seconds and ``PUBLISH``'s commandstats.

    ``used_cpu_user_main_thread`` and ``used_cpu_sys_main_thread`` (Redis 6.2+,
    Valkey) count everything the thread that runs commands does, the socket
    writes to every subscriber included; ``commandstats`` ``usec`` counts only
    the time inside the command (queueing the message), not those writes.
    """
    calls, usec = publish_cost(client)  # read first: its own cost is not counted
    cpu = client.info("cpu")
    used = cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"]
    return CpuSample(float(used), calls, usec)


class FanoutResult(NamedTuple):
    """One fan-out measurement.

    Attributes:
        mode: ``"processes"`` or ``"threads"``.
        subscribers: Subscribers on the channel.
        latency: Publish-to-receive seconds, shape ``(messages, subscribers)``.
        server_us: Microseconds inside ``PUBLISH`` per call (``INFO
            commandstats``): queueing the message for every subscriber, not
            writing it to their sockets.
        receivers: What each ``PUBLISH`` returned.
        server_cpu_us: Microseconds of the server main thread's CPU per
            ``PUBLISH`` over the run (``INFO cpu``): the command, the socket
            writes, and anything else the server did meanwhile (its timers,
            and in ``"threads"`` mode each subscriber's health-check PING).
    """

    mode: str
    subscribers: int
    latency: np.ndarray
    server_us: float
    receivers: list[int]
    server_cpu_us: float = float("nan")

    @property
    def last(self) -> np.ndarray:
        """Per message, the latency of the last subscriber to get it."""
        return self.latency.max(axis=1)


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    """One line of a child's stdout, or raise if it is late or dead."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("a subscriber process did not answer in time")
            if sel.select(timeout=left):
                line = proc.stdout.readline().decode().strip()
                if not line:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"subscriber process failed: {err.strip()}")
                return line


def _connection_info(client: redis.Redis) -> dict[str, Any]:
    kw = client.connection_pool.connection_kwargs
    if client.connection_pool.connection_class is not redis.Connection:
        raise ValueError(
            "mode='processes' needs a plain TCP connection (no TLS, no unix "
            "socket); use mode='threads'"
        )
    return {
        "host": kw.get("host", "localhost"),
        "port": int(kw.get("port", 6379)),
        "username": kw.get("username"),
        "password": kw.get("password"),
    }


class FanoutSubscribers:
    """``n`` subscribers on one channel, ready for ``messages`` messages.

    The caller publishes message ``i`` as ``f"{i}"`` (anything after a space
    is ignored) on :attr:`channel`, then calls :meth:`wait_for` ``(i)``,
    which returns once every subscriber has it. :meth:`arrivals` gives when
    each subscriber got each message (``time.perf_counter()``, which is the
    same clock in every process of this machine).

    Args:
        client: A client of the server (a plain TCP ``redis.Redis`` for
            ``mode="processes"``).
        subscribers: 1 to 1000 subscribers.
        messages: 1 to 100000 messages.
        mode: ``"processes"``: the connections are shared out over
            ``processes`` child processes (:mod:`._listen_child`, stdlib only),
            each reading its share with one selectors loop. ``"threads"``: one
            :class:`~labkit.pubsub.Subscriber` (a thread) per subscriber here.
        processes: Child processes for ``mode="processes"`` (1 to 16).
        channel: The channel.
        timeout: Seconds allowed for subscribing, and for each message.
    """

    def __init__(
        self,
        client: redis.Redis,
        subscribers: int,
        messages: int,
        *,
        mode: str = "processes",
        processes: int = 2,
        channel: str = "lab:fanout",
        timeout: float = 30.0,
    ) -> None:
        self.client = client
        self.n = check_count("subscribers", subscribers, max=1000)
        self.messages = check_count("messages", messages, max=100_000)
        self.mode = check_choice("mode", mode, MODES)
        self.processes = check_count("processes", processes, max=16)
        self.channel = check_name("channel", channel)
        self.timeout = check_seconds("timeout", timeout, max=600)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._subs: list[Subscriber] = []
        self._listen: redis.Redis | None = None
        self._arrivals = np.full((self.messages, self.n), np.nan)

    def start(self) -> FanoutSubscribers:
        """Start the subscribers; return once every one is subscribed."""
        try:
            if self.mode == "threads":
                self._start_threads()
            else:
                self._start_processes()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_threads(self) -> None:
        # A pool of their own, sized for them: the caller's pool is left alone.
        self._listen = fresh_client(self.client, max_connections=self.n)
        self._subs = [
            Subscriber(self._listen, [self.channel], name=f"fanout-{i}")
            for i in range(self.n)
        ]
        for s in self._subs:
            s.start(timeout=self.timeout)

    def _start_processes(self) -> None:
        info = _connection_info(self.client)
        shares = [len(range(k, self.n, self.processes)) for k in range(self.processes)]
        for share in (s for s in shares if s):
            proc = spawn(
                [sys.executable, str(_CHILD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            self._procs.append(proc)
            cfg = {**info, "channel": self.channel, "connections": share}
            cfg |= {"messages": self.messages, "timeout": self.timeout + 60}
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(cfg) + "\n").encode())
            proc.stdin.flush()
        deadline = time.monotonic() + self.timeout
        for proc in self._procs:
            if _read_line(proc, deadline) != "ready":
                raise RuntimeError("subscriber process: expected 'ready'")

    def wait_for(self, i: int) -> None:
        """Block until every subscriber has message ``i`` (raise if late)."""
        if self.mode == "processes":
            for proc in self._procs:
                line = _read_line(proc, time.monotonic() + self.timeout)
                if line != f"got {i}":
                    raise RuntimeError(f"expected 'got {i}', got {line!r}")
            return
        for j, s in enumerate(self._subs):
            got: Received | None = s.get(timeout=self.timeout)
            if got is None:
                raise TimeoutError(f"subscriber {j} got no message {i}")
            self._arrivals[int(got.data.split(" ", 1)[0]), j] = got.received_at

    def arrivals(self) -> np.ndarray:
        """``time.perf_counter()`` at each arrival, shape ``(messages, n)``.

        In ``"processes"`` mode the children report them when every message
        has been waited for; call this after the last :meth:`wait_for`.
        """
        if self.mode == "processes" and self._procs:
            columns: list[list[float]] = []
            for proc in self._procs:
                line = _read_line(proc, time.monotonic() + self.timeout)
                columns += json.loads(line)["arrivals"]
            self._arrivals = np.array(columns).T
            self._close_processes()
        return self._arrivals

    def _close_processes(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._procs = []

    def stop(self) -> None:
        """Stop every subscriber (processes killed, threads stopped)."""
        self._close_processes()
        for s in self._subs:
            s.stop()
        self._subs = []
        if self._listen is not None:
            self._listen.connection_pool.disconnect()
            self._listen = None

    def __enter__(self) -> FanoutSubscribers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def result(
        self,
        sent: list[float],
        receivers: list[int],
        before: CpuSample,
        after: CpuSample,
    ) -> FanoutResult:
        """The measurement, from the caller's send times and two samples."""
        latency = self.arrivals() - np.asarray(sent)[:, None]
        calls = after.calls - before.calls
        usec = (after.usec - before.usec) / calls if calls > 0 else float("nan")
        cpu = (after.cpu - before.cpu) * 1e6 / calls if calls > 0 else float("nan")
        return FanoutResult(self.mode, self.n, latency, usec, list(receivers), cpu)


def measure_fanout(
    client: redis.Redis,
    subscribers: int,
    messages: int,
    *,
    mode: str = "processes",
    processes: int = 2,
    channel: str = "lab:fanout",
    timeout: float = 30.0,
) -> FanoutResult:
    """Publish-to-receive latency with ``subscribers`` listeners on one channel.

    Messages are sent one at a time, each after every subscriber got the
    previous one, so this is the latency of an idle system, not of a
    saturated one. Arguments as for :class:`FanoutSubscribers`.
    """
    subs = FanoutSubscribers(
        client,
        subscribers,
        messages,
        mode=mode,
        processes=processes,
        channel=channel,
        timeout=timeout,
    )
    with subs:
        sent: list[float] = []
        receivers: list[int] = []
        before = server_cpu(client)
        for i in range(subs.messages):
            sent.append(time.perf_counter())
            receivers.append(int(client.publish(subs.channel, str(i))))
            subs.wait_for(i)
        after = server_cpu(client)
        return subs.result(sent, receivers, before, after)
