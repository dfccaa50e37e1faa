"""Fan-out latency: subscribers as threads of this process, or in other processes.

The notebook's first measurement ran every subscriber as a thread of the
Python process that published: what it timed was mostly Python waking 100
threads one after another under the GIL. :func:`measure_fanout` can put the
subscribers in separate processes instead, each reading many connections with
one ``selectors`` loop, and it reads the server's own time per ``PUBLISH``
from ``INFO commandstats``, so the server's share and the client's are seen
side by side.
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

from labkit.core.args import check_choice, check_count, check_seconds
from labkit.pubsub import Publisher, Subscriber
from labkit.server import fresh_client, spawn

__all__ = ["MODES", "FanoutResult", "measure_fanout", "publish_cost"]

MODES = ("processes", "threads")
_CHILD = Path(__file__).with_name("_listen_child.py")


class FanoutResult(NamedTuple):
    """One fan-out measurement.

    Attributes:
        mode: ``"processes"`` or ``"threads"``.
        subscribers: Subscribers on the channel.
        latency: Publish-to-receive seconds, shape ``(messages, subscribers)``.
        server_us: Microseconds the server spent per ``PUBLISH`` (its
            ``INFO commandstats`` ``usec`` over ``calls`` for this run): the
            time to queue the message for every subscriber. The socket
            writes happen after the command, and are not in it.
        receivers: What each ``PUBLISH`` returned.
    """

    mode: str
    subscribers: int
    latency: np.ndarray
    server_us: float
    receivers: list[int]

    @property
    def last(self) -> np.ndarray:
        """Per message, the latency of the last subscriber to get it."""
        return self.latency.max(axis=1)


def publish_cost(client: redis.Redis) -> tuple[int, int]:
    """``(calls, usec)`` of ``PUBLISH`` so far, from ``INFO commandstats``."""
    stats = client.info("commandstats").get("cmdstat_publish", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def _server_us(before: tuple[int, int], after: tuple[int, int]) -> float:
    calls = after[0] - before[0]
    return (after[1] - before[1]) / calls if calls > 0 else float("nan")


def _threads(
    client: redis.Redis, n: int, messages: int, channel: str, timeout: float
) -> tuple[np.ndarray, list[int], tuple[int, int], tuple[int, int]]:
    # One connection per subscriber: a pool of their own, sized for them, so
    # the caller's pool (and its max_connections) is left alone.
    listen = fresh_client(client, max_connections=n)
    subs = [Subscriber(listen, [channel], name=f"fanout-{i}") for i in range(n)]
    pub = Publisher(client)
    out = np.empty((messages, n))
    receivers = []
    try:
        for s in subs:
            s.start()
        before = publish_cost(client)
        for i in range(messages):
            receivers.append(pub.publish(channel, str(i)))
            for j, s in enumerate(subs):
                got = s.get(timeout=timeout)
                if got is None or got.latency is None:
                    raise TimeoutError(
                        f"subscriber {j} got no message {i} in {timeout} s"
                    )
                out[i, j] = got.latency
        after = publish_cost(client)
    finally:
        for s in subs:
            s.stop()
        listen.connection_pool.disconnect()
    return out, receivers, before, after


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


def _processes(
    client: redis.Redis,
    n: int,
    messages: int,
    channel: str,
    timeout: float,
    processes: int,
) -> tuple[np.ndarray, list[int], tuple[int, int], tuple[int, int]]:
    info = _connection_info(client)
    shares = [len(range(k, n, processes)) for k in range(min(processes, n))]
    procs: list[subprocess.Popen[bytes]] = []
    sent = np.empty(messages)
    receivers = []
    try:
        for share in shares:
            proc = spawn(
                [sys.executable, str(_CHILD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            procs.append(proc)
            cfg = {**info, "channel": channel, "connections": share}
            cfg |= {"messages": messages, "timeout": timeout + 10}
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(cfg) + "\n").encode())
            proc.stdin.flush()
        deadline = time.monotonic() + timeout
        for proc in procs:
            if _read_line(proc, deadline) != "ready":
                raise RuntimeError("subscriber process: expected 'ready'")
        before = publish_cost(client)
        for i in range(messages):
            sent[i] = time.perf_counter()
            receivers.append(int(client.publish(channel, f"{i} {sent[i]!r}")))
            for proc in procs:
                _read_line(proc, time.monotonic() + timeout)
        after = publish_cost(client)
        arrivals = []
        for proc in procs:
            arrivals += json.loads(_read_line(proc, time.monotonic() + timeout))[
                "arrivals"
            ]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    latency = np.array(arrivals).T - sent[:, None]
    return latency, receivers, before, after


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
    saturated one.

    Args:
        client: The publisher's client (a plain TCP ``redis.Redis`` for
            ``mode="processes"``).
        subscribers: 1 to 1000 subscribers.
        messages: 1 to 100000 messages.
        mode: ``"processes"``: the subscribers' connections are shared out
            over ``processes`` child processes, each reading its share with
            one selectors loop. ``"threads"``: one
            :class:`~labkit.pubsub.Subscriber` (a thread) per subscriber, in
            this process.
        processes: Child processes for ``mode="processes"`` (1 to 16).
        channel: The channel.
        timeout: Seconds allowed for subscribing, and for each message.
    """
    check_count("subscribers", subscribers, max=1000)
    check_count("messages", messages, max=100_000)
    check_choice("mode", mode, MODES)
    check_count("processes", processes, max=16)
    check_seconds("timeout", timeout, max=600)
    if mode == "threads":
        lat, receivers, before, after = _threads(
            client, subscribers, messages, channel, timeout
        )
    else:
        lat, receivers, before, after = _processes(
            client, subscribers, messages, channel, timeout, processes
        )
    return FanoutResult(mode, subscribers, lat, _server_us(before, after), receivers)
