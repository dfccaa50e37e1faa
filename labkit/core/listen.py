"""The one pub/sub listening loop: it survives bad messages, errors and reconnects.

:class:`Listener` owns one pub/sub connection. It runs in a background thread
(:meth:`Listener.start`) or is read on demand (:meth:`Listener.pump`, for
experiments that choose when a listener hears what was published). Every
pub/sub user in labkit (the Subscriber, FlagStore, the games) is built on it,
so they share its guarantees:

- A callback that raises, or a message that cannot be parsed, is counted
  (``stats.callback_errors``, ``stats.bad_messages``) and kept as
  ``stats.last_error``; the loop goes on. It never dies silently.
- A dropped connection is reopened and the subscriptions renewed (redis-py
  re-subscribes on reconnect). ``on_subscribe`` runs after every
  confirmation, the first and each renewal: that is where a user reloads
  the state it may have missed while disconnected, since pub/sub replays
  nothing. ``stats.reconnects`` and ``stats.downtime`` say how often and how
  long the connection was down.
- A connection that stays open but goes silent (a frozen server, a network
  partition) is found by a watchdog: the loop sends a PING of its own every
  ``health_check_interval`` and closes the connection if no answer (nor any
  other message) arrives within ``dead_after``. redis-py's own health check
  does not do this on a subscribed connection: it sends the PING without
  waiting for the reply.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from labkit.core.args import check_callable, check_name, check_names, check_seconds
from labkit.errors import ListenerError, MalformedMessageError

__all__ = ["Listener", "ListenerStats", "as_text", "is_pong"]

# A closed socket can also surface as OSError, or as ValueError ("I/O operation
# on closed file") when the client was closed under a running listener.
_NET_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError, ValueError)
_CONFIRMS = ("subscribe", "psubscribe", "ssubscribe")
_MESSAGES = ("message", "pmessage", "smessage")

Message = dict[str, Any]

#: Seconds to finish reading a reply that has started, on a connection with no
#: socket timeout of its own.
_BODY_TIMEOUT = 5.0


def as_text(value: Any) -> Any:
    """``bytes`` decoded as UTF-8; anything else unchanged."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def is_pong(response: Any, token: str) -> bool:
    """True if a raw pub/sub reply is the answer to ``PING token``.

    On a subscribed connection (RESP2) the answer is ``["pong", token]``;
    under RESP3 it is the plain reply ``token``.
    """
    if isinstance(response, list | tuple) and len(response) == 2:
        kind, payload = response
        return bool(as_text(kind) == "pong" and as_text(payload) == token)
    return bool(as_text(response) == token)


@dataclass
class ListenerStats:
    """What a listener has been through.

    Attributes:
        messages: Messages handed to the callback.
        confirmations: Subscribe confirmations, the first ones and renewals.
        reconnects: Times the connection was reopened after being lost.
        network_errors: Reads that failed because the connection broke.
        unresponsive: Connections closed by the watchdog (silent peer).
        callback_errors: Exceptions raised by the callback.
        bad_messages: Messages the callback could not parse.
        downtime: Seconds spent disconnected, summed over the outages
            that have ended.
        down_since: ``time.monotonic()`` when the current outage began, or
            None while connected.
        last_error: The most recent exception of any of the kinds above.
    """

    messages: int = 0
    confirmations: int = 0
    reconnects: int = 0
    network_errors: int = 0
    unresponsive: int = 0
    callback_errors: int = 0
    bad_messages: int = 0
    downtime: float = 0.0
    down_since: float | None = None
    last_error: BaseException | None = field(default=None, repr=False)


class Listener:
    """One pub/sub connection, read in a thread or on demand.

    Args:
        client: A ``redis.Redis`` (a ``RedisCluster`` with ``sharded=True``).
        channels: Channel names (``SSUBSCRIBE`` when sharded).
        patterns: Glob patterns (``PSUBSCRIBE``); not with ``sharded``.
        on_message: Called with each message dict (``type``, ``channel``,
            ``pattern``, ``data``), in the listener's thread. Raise
            :class:`~labkit.errors.MalformedMessageError` for a message that
            cannot be parsed; any other exception counts as a callback error.
        on_subscribe: Called with the channel (or pattern) name after each
            subscribe confirmation, the first and every renewal after a
            reconnect; exceptions count as callback errors.
        sharded: Sharded pub/sub on a cluster. redis-py's cluster pub/sub
            keeps one connection per shard and reconnects them itself, so in
            this mode the watchdog does not run and ``stats.reconnects`` and
            ``stats.downtime`` count only the outages that reach the loop.
        health_check_interval: Seconds between the watchdog's PINGs (0.01-3600).
        dead_after: Seconds of silence after a PING before the connection is
            declared dead and reopened (default: 3 intervals).
        poll_interval: Longest single wait for a message; :meth:`stop`
            returns within about this long.
        name: The thread's name (and the listener's, in messages).
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        *,
        on_message: Callable[[Message], object],
        on_subscribe: Callable[[str], object] | None = None,
        sharded: bool = False,
        health_check_interval: float = 1.0,
        dead_after: float | None = None,
        poll_interval: float = 0.05,
        name: str = "labkit-listener",
    ) -> None:
        self.channels = check_names("channels", channels, min_len=0)
        self.patterns = check_names("patterns", patterns, min_len=0)
        if not self.channels and not self.patterns:
            raise ValueError("channels=[] and patterns=[]: subscribe to something")
        if sharded and self.patterns:
            raise ValueError(f"patterns={self.patterns!r}: sharded pub/sub has none")
        if not isinstance(sharded, bool):
            raise TypeError(f"sharded={sharded!r}: must be True or False")
        self.on_message = check_callable("on_message", on_message, signature="msg")
        if on_subscribe is not None:
            check_callable("on_subscribe", on_subscribe, signature="channel")
        self.on_subscribe = on_subscribe
        self.health_check_interval = check_seconds(
            "health_check_interval",
            health_check_interval,
            min=0.01,
            max=3600,
            min_open=False,
        )
        self.dead_after = check_seconds(
            "dead_after",
            3 * self.health_check_interval if dead_after is None else dead_after,
            min=0.01,
            max=3600,
            min_open=False,
        )
        self.poll_interval = check_seconds(
            "poll_interval", poll_interval, min=0.001, max=5, min_open=False
        )
        self.name = check_name("name", name)
        self.client = client
        self.sharded = sharded
        self.stats = ListenerStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self._ping_token = f"labkit-watchdog-{uuid.uuid4().hex[:8]}"
        self._ping_sent: float | None = None
        self._next_ping = 0.0
        self._last_read = 0.0
        self._connected_once = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Listener {self.name} {state} {self.channels + self.patterns}>"

    # --- lifecycle ----------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        """True while subscribed (between :meth:`connect` and :meth:`stop`)."""
        return self._pubsub is not None and self.stats.down_since is None

    def connect(self, timeout: float = 5.0) -> None:
        """Subscribe and wait for every confirmation; no thread is started.

        Raises:
            ListenerError: No confirmation within ``timeout`` seconds.
        """
        check_seconds("timeout", timeout, max=3600)
        if self._pubsub is not None:
            return
        self._stop.clear()
        self._pubsub = self.client.pubsub()
        try:
            if self.sharded:
                self._pubsub.ssubscribe(*self.channels)
            else:
                if self.channels:
                    self._pubsub.subscribe(*self.channels)
                if self.patterns:
                    self._pubsub.psubscribe(*self.patterns)
                conn = self._pubsub.connection
                conn.register_connect_callback(self._on_connect)
                # Every failure must reach this loop (so outages are counted and
                # timed): no silent reconnect-and-retry inside redis-py. The
                # loop's next read reconnects; redis-py then re-subscribes.
                conn.retry = Retry(NoBackoff(), 0)
                self._connected_once = True  # from here on, a connect is a reconnect
            self._await_confirmations(timeout)
        except BaseException:
            self._close_pubsub()
            raise
        self._next_ping = time.monotonic() + self.health_check_interval

    def start(self, timeout: float = 5.0) -> Listener:
        """Subscribe (waiting for the confirmations), then listen in a thread.

        When this returns, a message published afterwards will be delivered.
        """
        if self._thread is not None and self._thread.is_alive():
            raise ListenerError(f"{self.name} is already running", name=self.name)
        self.connect(timeout)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (if any) and close the connection. Idempotent.

        Raises:
            ListenerError: The thread did not end within ``timeout`` seconds.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise ListenerError(
                    f"{self.name} did not stop within {timeout} s", name=self.name
                )
        self._thread = None
        self._close_pubsub()

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            conn = self._pubsub.connection
            if conn is not None and not self.sharded:
                # The pooled connection outlives us: stop it calling back.
                conn.deregister_connect_callback(self._on_connect)
            self._pubsub.close()
            self._pubsub = None

    # --- reading --------------------------------------------------------------
    def _on_connect(self, connection: Any) -> None:
        # redis-py calls this after every (re)connect, having re-subscribed.
        if self._connected_once:
            self.stats.reconnects += 1
        self._connected_once = True
        self._ping_sent = None
        self._back_up()

    def _back_up(self) -> None:
        if self.stats.down_since is not None:
            self.stats.downtime += time.monotonic() - self.stats.down_since
            self.stats.down_since = None

    def _read_raw(self, timeout: float) -> Any:
        """One raw reply (or None); watchdog PONGs are consumed here.

        ``timeout`` bounds the wait for a reply to *start*. Once bytes are
        there, the rest of the reply gets the connection's socket timeout:
        redis-py 8.1's ``parse_response(block=False, timeout=t)`` would bound
        the whole read by ``t``, and on a slow link a reply that arrives in
        pieces would then fail half read and cost the connection.
        """
        if self.sharded:
            return self._pubsub.get_sharded_message(timeout=timeout)
        conn = self._pubsub.connection
        if not self._can_read(conn, timeout):
            return None
        response = self._pubsub.parse_response(
            block=False, timeout=conn.socket_timeout or _BODY_TIMEOUT
        )
        if response is None:
            return None
        self._last_read = time.monotonic()
        if is_pong(response, self._ping_token):
            self._ping_sent = None
            return None
        return response

    def _can_read(self, conn: Any, timeout: float) -> bool:
        """True if a reply (or part of one) is waiting, within ``timeout`` s."""
        try:  # connects (and redis-py resubscribes) if the socket is closed
            return bool(conn.can_read(timeout=timeout))
        except _NET_ERRORS:
            # can_read raises on a connection the server closed, but leaves
            # the socket open: every later read would fail the same way.
            self._drop_connection()
            raise

    def _to_message(self, raw: Any) -> Message | None:
        if raw is None:
            return None
        message: Message | None = (
            raw  # get_sharded_message already handled it
            if self.sharded
            else self._pubsub.handle_message(raw)
        )
        return message

    def _await_confirmations(self, timeout: float) -> None:
        expected = len(set(self.channels)) + len(set(self.patterns))
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ListenerError(
                    f"{self.name}: no subscribe confirmation within {timeout} s",
                    name=self.name,
                )
            msg = self._to_message(self._read_raw(min(left, 0.1)))
            if msg is not None and as_text(msg["type"]) in _CONFIRMS:
                seen += 1
                self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        kind = as_text(msg["type"])
        try:
            if kind in _CONFIRMS:
                self.stats.confirmations += 1
                if self.on_subscribe is not None:
                    self.on_subscribe(as_text(msg["channel"]))
            elif kind in _MESSAGES:
                self.stats.messages += 1
                self.on_message(msg)
        except MalformedMessageError as exc:
            self.stats.bad_messages += 1
            self.stats.last_error = exc
        except Exception as exc:  # the user's callback: count it, keep going
            self.stats.callback_errors += 1
            self.stats.last_error = exc

    def _read_one(self, timeout: float) -> None:
        """Read and dispatch at most one message; network errors are counted."""
        try:
            if not self.sharded:
                self._watchdog()
            msg = self._to_message(self._read_raw(timeout))
        except _NET_ERRORS as exc:
            # redis-py has closed the socket; the next read reconnects and
            # re-subscribes. Back off a little, but stay stoppable.
            self.stats.network_errors += 1
            self.stats.last_error = exc
            if self.stats.down_since is None:
                self.stats.down_since = time.monotonic()
            self._stop.wait(min(0.2, self.poll_interval * 4))
            return
        self._back_up()  # the read went through: connected
        if msg is not None:
            self._dispatch(msg)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read_one(self.poll_interval)

    def _drop_connection(self) -> None:
        """Close the socket, so that the next read reconnects and resubscribes."""
        conn = None if self._pubsub is None else self._pubsub.connection
        if conn is not None and not self.sharded:
            with contextlib.suppress(Exception):
                conn.disconnect()

    def _watchdog(self) -> None:
        now = time.monotonic()
        silent = now - max(self._ping_sent or 0.0, self._last_read)
        if self._ping_sent is not None and silent > self.dead_after:
            # Open but silent: only a missing answer tells. Any message read
            # counts as a sign of life (under a backlog the PONG queues
            # behind many messages, and that connection is not dead), and
            # so does one waiting to be read: the silence may be this
            # thread's own (a stall between the PING and reading its PONG).
            if self._can_read(self._pubsub.connection, 0):
                return
            self.stats.unresponsive += 1
            self._ping_sent = None
            if self.stats.down_since is None:
                self.stats.down_since = now
            self._drop_connection()
            return
        if self._ping_sent is None and now >= self._next_ping:
            self._pubsub.ping(self._ping_token)
            self._ping_sent = now
            self._next_ping = now + self.health_check_interval

    def pump(self, timeout: float = 5.0) -> int:
        """Handle every message published before this call; return how many.

        Sends a PING down the subscription and reads until its answer: the
        server answers in order, so whatever was published before is read
        first. For on-demand listeners (no thread).

        Raises:
            ListenerError: Not connected, running in a thread, or no answer
                within ``timeout`` seconds.
        """
        check_seconds("timeout", timeout, max=3600)
        if self._pubsub is None:
            raise ListenerError(f"{self.name}: pump() before connect()", name=self.name)
        if self.running:
            raise ListenerError(
                f"{self.name}: pump() while its thread is reading", name=self.name
            )
        token = f"labkit-pump-{uuid.uuid4().hex}"
        self._pubsub.ping(token)
        before = self.stats.messages
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self._pubsub.parse_response(block=False, timeout=0.1)
            if raw is None:
                continue
            if is_pong(raw, token):
                return self.stats.messages - before
            msg = self._pubsub.handle_message(raw)
            if msg is not None:
                self._dispatch(msg)
        raise ListenerError(
            f"{self.name}: no answer to PING within {timeout} s", name=self.name
        )
