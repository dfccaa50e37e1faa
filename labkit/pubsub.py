"""Pub/sub helpers: a background subscriber, a numbering publisher, fan-out timing.

Redis pub/sub is fire-and-forget: a message goes to the connections subscribed
*at that instant* and is then gone. Nothing is stored, so a subscriber that is
disconnected, or joins late, never sees what it missed. These helpers do not
change that (use Streams, notebook 06, when messages must not be lost); they
make it *visible*: :class:`Publisher` numbers every message per channel, and
:class:`Subscriber` counts the gaps, the reconnects and the silent periods.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
import redis

__all__ = [
    "Publisher",
    "Received",
    "Subscriber",
    "SubscriberStats",
    "delivery_matrix",
    "is_pong",
    "measure_fanout",
]

_PING = "labkit-pubsub-ping"
_NET_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class Received(NamedTuple):
    """One message as a :class:`Subscriber` received it.

    Attributes:
        channel: Channel it was published on.
        data: The payload (unwrapped if it came from a :class:`Publisher`).
        pattern: The matching pattern for pattern subscriptions, else None.
        kind: ``"message"``, ``"pmessage"`` or ``"smessage"`` (sharded).
        source: Id of the :class:`Publisher` that sent it, else None.
        seq: The publisher's number for it on this channel (1, 2, ...), else None.
        sent_at: ``time.perf_counter()`` at publish, else None.
        received_at: ``time.perf_counter()`` when the listener thread got it.
    """

    channel: str
    data: str
    pattern: str | None
    kind: str
    source: str | None
    seq: int | None
    sent_at: float | None
    received_at: float

    @property
    def latency(self) -> float | None:
        """Publish-to-receive time in seconds (same-process publishers only)."""
        return None if self.sent_at is None else self.received_at - self.sent_at


@dataclass
class SubscriberStats:
    """Counters kept by a :class:`Subscriber` (read them at any time).

    Attributes:
        received: Messages delivered to the callback or queue.
        missed: Numbered messages that never arrived (gaps in ``seq``).
        connects: Times the connection was (re)established, first one included.
        errors: Connection errors the listener caught and recovered from.
        unresponsive: Times the server left a health-check PING unanswered for
            ``dead_after`` seconds and the connection was dropped and reopened.
    """

    received: int = 0
    missed: int = 0
    connects: int = 0
    errors: int = 0
    unresponsive: int = 0

    @property
    def reconnects(self) -> int:
        """Connections made after the first one."""
        return max(0, self.connects - 1)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def is_pong(response: Any, token: str) -> bool:
    """True if a raw pub/sub ``response`` answers ``PING token``.

    RESP2 answers a PING on a subscribed connection with ``["pong", token]``,
    RESP3 with plain ``token``; redis-py's ``get_message`` only understands
    the first, so read with ``parse_response`` and test with this.
    """
    if isinstance(response, list | tuple) and len(response) == 2:
        return _text(response[0]) == "pong" and _text(response[1]) == token
    return _text(response) == token


class Publisher:
    """Publish messages wrapped with a source id, a sequence number and a timestamp.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster`` when ``sharded``).
        sharded: Use ``SPUBLISH`` (sharded pub/sub, Redis 7+ cluster): the
            message travels only within the shard that owns the channel's slot,
            instead of being broadcast over the whole cluster bus.
        source: Id written into every message; a random one by default.

    The envelope is JSON, ``{"src", "seq", "t", "data"}``; ``t`` is
    ``time.perf_counter()``, meaningful only to subscribers in this process.
    """

    def __init__(
        self, client: Any, *, sharded: bool = False, source: str | None = None
    ) -> None:
        self.client = client
        self.sharded = sharded
        self.source = source or uuid.uuid4().hex[:8]
        self._seq: Counter[str] = Counter()
        self._lock = threading.Lock()

    def wrap(self, channel: str, data: str) -> str:
        """Number and timestamp one message for ``channel`` (without sending it)."""
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"channel={channel!r}: expected a non-empty str")
        with self._lock:
            self._seq[channel] += 1
            seq = self._seq[channel]
        body = {"src": self.source, "seq": seq, "t": time.perf_counter(), "data": data}
        return json.dumps(body)

    def publish(self, channel: str, data: str = "") -> int:
        """Publish one message; return how many subscribers the server sent it to.

        A return of 0 means the message is already gone: nobody was listening.
        """
        message = self.wrap(channel, str(data))
        if self.sharded:
            return int(self.client.spublish(channel, message))
        return int(self.client.publish(channel, message))

    def publish_many(self, channel: str, items: Iterable[str]) -> list[int]:
        """Publish several messages in one pipeline; receiver counts per message."""
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            message = self.wrap(channel, str(item))
            if self.sharded:
                pipe.spublish(channel, message)
            else:
                pipe.publish(channel, message)
        return [int(n) for n in pipe.execute()]


class Subscriber:
    """Listen to channels and patterns in a background thread.

    Args:
        client: A ``redis.Redis``; with ``sharded=True`` a ``RedisCluster``.
            The subscriber takes one connection of its own from its pool.
        channels: Channels to subscribe to (``SSUBSCRIBE`` when sharded).
        patterns: Glob patterns (``PSUBSCRIBE``); not with ``sharded``.
        callback: Called in the listener thread with each :class:`Received`;
            by default messages go to a queue read with :meth:`get`.
        sharded: Sharded pub/sub on a cluster (``SSUBSCRIBE``).
        health_check_interval: Seconds between health checks (> 0). Sets
            redis-py's own ``health_check_interval`` on the connection (a PING
            before reading from an idle connection, so a dead socket fails
            fast), and this class sends its own PING at that pace and watches
            for the answer.
        dead_after: Seconds without an answer to our PING before the connection
            is declared dead, closed and reopened (default 3 intervals).
            Not done for sharded subscribers (one connection per shard).
        poll_interval: Longest wait for a message before the listener checks
            whether to stop; :meth:`stop` returns within about this long.
        name: Name of the listener thread.

    Example:
        >>> with Subscriber(r, ["news"]) as sub:
        ...     Publisher(r).publish("news", "hello")
        ...     sub.get(timeout=1).data
        1
        'hello'
    """

    def __init__(
        self,
        client: Any,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        *,
        callback: Callable[[Received], Any] | None = None,
        sharded: bool = False,
        health_check_interval: float = 1.0,
        dead_after: float | None = None,
        poll_interval: float = 0.05,
        name: str = "labkit-subscriber",
    ) -> None:
        self.channels = [channels] if isinstance(channels, str) else list(channels)
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        for what, names in (("channels", self.channels), ("patterns", self.patterns)):
            if not all(isinstance(c, str) and c for c in names):
                raise ValueError(f"{what}={names!r}: expected non-empty strs")
        if not self.channels and not self.patterns:
            raise ValueError("channels=() and patterns=(): subscribe to something")
        if sharded and self.patterns:
            raise ValueError(f"patterns={self.patterns!r}: sharded pub/sub has none")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback={callback!r}: expected a callable or None")
        for arg, value in (
            ("health_check_interval", health_check_interval),
            ("poll_interval", poll_interval),
            ("dead_after", dead_after if dead_after is not None else 1.0),
        ):
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{arg}={value!r}: expected a number of seconds > 0")
        self.client = client
        self.sharded = sharded
        self.callback = callback
        self.health_check_interval = float(health_check_interval)
        self.dead_after = float(dead_after or 3 * health_check_interval)
        self.poll_interval = float(poll_interval)
        self.name = name
        self.stats = SubscriberStats()
        self.counts: Counter[str] = Counter()
        self._queue: queue.Queue[Received] = queue.Queue()
        self._last_seq: dict[tuple[str, str], int] = {}
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self._ping_sent: float | None = None
        self._next_ping = 0.0
        self._last_read = 0.0

    # --- lifecycle --------------------------------------------------------
    def start(self, timeout: float = 5.0) -> Subscriber:
        """Subscribe, wait for the server's confirmations, start the thread.

        When this returns the subscriptions are active on the server: a message
        published afterwards will be delivered.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was already started")
        self._pubsub = self.client.pubsub()
        if self.sharded:
            self._pubsub.ssubscribe(*self.channels)
        else:
            if self.channels:
                self._pubsub.subscribe(*self.channels)
            if self.patterns:
                self._pubsub.psubscribe(*self.patterns)
            conn = self._pubsub.connection
            conn.health_check_interval = self.health_check_interval
            conn.register_connect_callback(self._on_connect)
            self.stats.connects += 1
        self._await_confirmations(timeout)
        self._next_ping = time.monotonic() + self.health_check_interval
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _await_confirmations(self, timeout: float) -> None:
        expected = len(set(self.channels)) + len(set(self.patterns))
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise TimeoutError(
                    f"{self.name}: no subscribe confirmation in {timeout} s"
                )
            msg = self._read(min(left, 0.1))
            if msg and _text(msg["type"]) in ("subscribe", "psubscribe", "ssubscribe"):
                seen += 1
        if self.sharded:
            self.stats.connects += len(self._pubsub.node_pubsub_mapping)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the connection (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not stop within {timeout} s")
        if self._pubsub is not None:
            self._pubsub.close()

    def __enter__(self) -> Subscriber:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the listener thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # --- the listener -----------------------------------------------------
    def _on_connect(self, connection: Any) -> None:
        # redis-py calls this on reconnect too, after resubscribing for us.
        self.stats.connects += 1
        self._ping_sent = None

    def _read(self, timeout: float) -> dict[str, Any] | None:
        if self.sharded:
            return self._pubsub.get_sharded_message(timeout=timeout)
        response = self._pubsub.parse_response(block=False, timeout=timeout)
        if response is None:
            return None
        self._last_read = time.monotonic()
        if is_pong(response, _PING):
            self._ping_sent = None
            return None
        return self._pubsub.handle_message(response)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if not self.sharded:
                        self._check_alive()
                    msg = self._read(self.poll_interval)
                except _NET_ERRORS:
                    # redis-py has closed the socket; the next read reconnects
                    # and resubscribes. Back off a little, but stay stoppable.
                    self.stats.errors += 1
                    self._stop.wait(min(0.2, self.poll_interval * 4))
                    continue
                if msg is not None:
                    self._handle(msg)
        finally:
            self._pubsub.close()

    def _check_alive(self) -> None:
        now = time.monotonic()
        silent = now - max(self._ping_sent or 0.0, self._last_read)
        if self._ping_sent is not None and silent > self.dead_after:
            # A socket can stay open while nothing comes back (a hung server, a
            # dropped network path): only a missing answer tells. Any message
            # read counts as a sign of life: under a backlog the PONG queues
            # behind thousands of messages, and that connection is not dead.
            self.stats.unresponsive += 1
            self._ping_sent = None
            self._pubsub.connection.disconnect()
            return
        if self._ping_sent is None and now >= self._next_ping:
            self._pubsub.ping(_PING)
            self._ping_sent = now
            self._next_ping = now + self.health_check_interval

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = _text(msg["type"])
        if kind not in ("message", "pmessage", "smessage"):
            return
        now = time.perf_counter()
        channel, data = _text(msg["channel"]), _text(msg["data"])
        source = seq = sent = None
        if isinstance(data, str) and data.startswith('{"src"'):
            body = json.loads(data)
            source, seq, sent, data = body["src"], body["seq"], body["t"], body["data"]
            last = self._last_seq.get((source, channel))
            if last is not None and seq > last + 1:
                self.stats.missed += seq - last - 1
            self._last_seq[(source, channel)] = seq
        item = Received(
            channel, data, _text(msg.get("pattern")), kind, source, seq, sent, now
        )
        self.counts[channel] += 1
        if self.callback is not None:
            self.callback(item)
        else:
            self._queue.put(item)
        with self._arrived:
            self.stats.received += 1
            self._arrived.notify_all()

    # --- reading ----------------------------------------------------------
    def get(self, timeout: float | None = 1.0) -> Received | None:
        """Next queued message, or None after ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[Received]:
        """Every message queued so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``stats.received >= count``; False if ``timeout`` passed."""
        with self._arrived:
            return self._arrived.wait_for(
                lambda: self.stats.received >= count, timeout=timeout
            )


def delivery_matrix(
    subscribers: Mapping[str, Subscriber], channels: Iterable[str]
) -> dict[str, dict[str, int]]:
    """Messages received per subscriber and channel: ``{name: {channel: n}}``."""
    channels = list(channels)
    return {
        name: {c: sub.counts.get(c, 0) for c in channels}
        for name, sub in subscribers.items()
    }


def measure_fanout(
    client: redis.Redis, subscribers: int, messages: int, *, channel: str = "lab:fanout"
) -> np.ndarray:
    """Publish-to-receive latency with ``subscribers`` listeners on one channel.

    Messages are sent one at a time, each after every subscriber got the last,
    so this is the latency of an idle system, not of a saturated one.

    Returns:
        Latencies in seconds, shape ``(messages, subscribers)``.
    """
    if not isinstance(subscribers, int) or subscribers < 1:
        raise ValueError(f"subscribers={subscribers!r}: expected an int >= 1")
    if not isinstance(messages, int) or messages < 1:
        raise ValueError(f"messages={messages!r}: expected an int >= 1")
    # One connection per subscriber: a pool of their own, sized for them, so
    # the caller's pool (and its max_connections) is left alone.
    base = client.connection_pool
    pool = redis.ConnectionPool(
        connection_class=base.connection_class,
        max_connections=subscribers,
        **base.connection_kwargs,
    )
    listen = redis.Redis(connection_pool=pool)
    subs = [
        Subscriber(listen, [channel], name=f"fanout-{i}") for i in range(subscribers)
    ]
    pub = Publisher(client)
    out = np.empty((messages, subscribers))
    try:
        for s in subs:
            s.start()
        for i in range(messages):
            pub.publish(channel, str(i))
            for j, s in enumerate(subs):
                got = s.get(timeout=5.0)
                if got is None or got.latency is None:
                    raise TimeoutError(f"subscriber {j} got no message {i} in 5 s")
                out[i, j] = got.latency
    finally:
        for s in subs:
            s.stop()
        pool.disconnect()
    return out
