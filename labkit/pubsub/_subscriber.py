"""The background :class:`Subscriber`: channels, patterns, callbacks, health checks."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import redis

from labkit.pubsub._messages import Received, SubscriberStats, _text, is_pong

__all__ = ["Subscriber"]

_PING = "labkit-pubsub-ping"
_NET_ERRORS = (redis.ConnectionError, redis.TimeoutError)


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
