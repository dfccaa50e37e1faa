"""The background :class:`Subscriber`, built on the one listener loop."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import redis

from labkit.core.args import (
    check_callable,
    check_count,
    check_names,
    check_seconds,
    renamed,
)
from labkit.core.clients import check_client
from labkit.core.listen import Listener, as_text
from labkit.errors import ListenerError
from labkit.pubsub._messages import Received, SubscriberStats, newer_id, parse_envelope
from labkit.pubsub._publisher import PREFIX, check_prefix, history_key

__all__ = ["Subscriber"]

_XRANGE_PAGE = 1000


class Subscriber:
    """Listen to channels and patterns in a background thread.

    Args:
        client: A ``redis.Redis``; with ``sharded=True`` a ``RedisCluster``.
            The subscriber takes one connection of its own from its pool (one
            per shard when sharded).
        channels: Channels to subscribe to (``SSUBSCRIBE`` when sharded); a
            list, not a bare str.
        patterns: Glob patterns (``PSUBSCRIBE``); not with ``sharded``.
        on_message: Called in the listener thread with each
            :class:`Received`; by default messages go to a queue read with
            :meth:`get`. An exception from it is counted
            (``stats.callback_errors``), never fatal. labkit names every
            callback ``on_<event>``: ``on_message``, ``on_subscribe``
            (here and in :class:`~labkit.core.listen.Listener`), ``on_change``
            (:class:`~labkit.flags.FlagStore`).
        on_subscribe: Called with the channel name after every subscribe
            confirmation, the first and each renewal after a reconnect: reload
            there whatever state the messages keep up to date, since pub/sub
            replays nothing.
        sharded: Sharded pub/sub on a cluster (``SSUBSCRIBE``).
        catch_up: After a reconnect, read back what was published meanwhile
            from each channel's history stream (kept by a
            :class:`~labkit.pubsub.Publisher` with ``history``), before any
            newer live message; duplicates are skipped by entry id.
        prefix: The history streams' key prefix (as the Publisher's; default
            ``labkit:pubsub``).
        queue_size: Most messages the local queue holds (when no
            ``on_message``);
            beyond it messages are dropped and counted (``stats.dropped``).
        health_check_interval: Seconds between the watchdog's PINGs.
        dead_after: Seconds a PING may go unanswered before the connection
            is declared dead, closed and reopened (default: 3 intervals).
        callback: The old name of ``on_message``: still accepted, with a
            ``DeprecationWarning`` (to be removed).
        poll_interval: Longest wait for a message before the listener checks
            whether to stop; :meth:`stop` returns within about this long. With
            redis-py 8.1 it also bounds each socket read *within* a message
            (``PubSub.parse_response(block=False, timeout=...)`` passes it to
            ``read_response``): on a slow link, a message whose bytes arrive
            with a longer gap raises a TimeoutError and the connection is
            dropped and reopened. Raise it for large messages on slow links.
        name: Name of the listener thread.
        clock: What stamps ``Received.received_at`` (default
            ``time.perf_counter``); the same clock as the publisher's
            ``clock`` makes ``Received.latency`` meaningful.

    Every message from a :class:`~labkit.pubsub.Publisher` carries a sequence
    number per channel; a jump in it is counted as ``stats.missed``, the
    messages this subscriber will never see (unless caught up). A message
    that looks like an envelope but cannot be parsed is counted
    (``stats.bad_messages``) and not delivered. The loop itself is
    :class:`labkit.core.listen.Listener`: it survives callback errors and
    bad messages, reconnects and resubscribes, and its watchdog finds a
    connection that went silent (redis-py's own ``health_check_interval``
    does not: on a subscribed connection it sends a PING without waiting for
    the answer).

    Example:
        >>> with Subscriber(r, ["news"]) as sub:
        ...     Publisher(r).publish("news", "hello")
        ...     sub.get(timeout=1).data
        1
        'hello'
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        *,
        on_message: Callable[[Received], object] | None = None,
        on_subscribe: Callable[[str], object] | None = None,
        sharded: bool = False,
        catch_up: bool = False,
        prefix: str = PREFIX,
        queue_size: int = 100_000,
        health_check_interval: float = 1.0,
        dead_after: float | None = None,
        poll_interval: float = 0.05,
        name: str = "labkit-subscriber",
        callback: Callable[[Received], object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        # labkit names callbacks on_<event> (on_message, on_subscribe,
        # on_change): callback= is the old name, deprecated.
        on_message = renamed(
            "Subscriber",
            "callback",
            callback,
            "on_message",
            on_message,
            category=DeprecationWarning,
        )
        if not isinstance(sharded, bool):
            raise TypeError(f"sharded={sharded!r}: must be True or False")
        if not isinstance(catch_up, bool):
            raise TypeError(f"catch_up={catch_up!r}: must be True or False")
        if sharded:
            check_client(client, owner="Subscriber(sharded=True)")
            if not isinstance(client, redis.RedisCluster):
                raise TypeError(
                    f"client={client!r}: sharded=True needs a redis.RedisCluster "
                    "(SSUBSCRIBE goes to the shard that owns each channel)"
                )
        else:
            check_client(
                client,
                owner="Subscriber",
                cluster="classic pub/sub is read from one node; pass "
                "sharded=True to use SSUBSCRIBE on a cluster",
            )
        if on_message is not None:
            given = "on_message" if callback is None else "callback"
            check_callable(given, on_message, signature="received message")
        if on_subscribe is not None:
            check_callable("on_subscribe", on_subscribe, signature="channel")
        plain = check_names("channels", channels, min_len=0)
        if catch_up:
            if check_names("patterns", patterns, min_len=0):
                raise ValueError(
                    f"patterns={list(patterns)!r} with catch_up=True: history is "
                    "kept per channel; a pattern has none"
                )
            for channel in plain:
                history_key(channel, prefix)  # refuses names that break the tag
        self.prefix = check_prefix(prefix)
        self._clock = check_callable("clock", clock, signature="clock() -> seconds")
        self.queue_size = check_count("queue_size", queue_size, max=10_000_000)
        self.listener = Listener(
            client,
            plain,
            patterns,
            on_message=self._on_message,
            on_subscribe=self._on_subscribe,
            sharded=sharded,
            health_check_interval=health_check_interval,
            dead_after=dead_after,
            poll_interval=poll_interval,
            name=name,
        )
        self.client = client
        self.channels = self.listener.channels
        self.patterns = self.listener.patterns
        self.sharded = sharded
        self.catch_up = catch_up
        self.on_message = on_message
        self.on_subscribe = on_subscribe
        self.name = name
        #: Messages received per channel.
        self.counts: Counter[str] = Counter()
        self._queue: queue.Queue[Received] = queue.Queue(self.queue_size)
        self._last_seq: dict[tuple[str, str], int] = {}
        self._resume: dict[str, str] = {}  # channel -> newest entry id handled
        self._dedupe_upto: dict[str, str] = {}  # channel -> last id caught up
        self._pending: set[str] = set()  # channels whose catch-up failed
        self._shards = 1
        self._n = Counter[str]()  # received, missed, recovered, duplicates...
        self._arrived = threading.Condition()
        self._final: SubscriberStats | None = None  # the counters at stop()

    @property
    def callback(self) -> Callable[[Received], object] | None:
        """The old name of :attr:`on_message` (read only)."""
        return self.on_message

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Subscriber {self.name} {state} {self.channels + self.patterns}>"

    # --- lifecycle --------------------------------------------------------
    def start(self, timeout: float = 5.0) -> Subscriber:
        """Subscribe, wait for the server's confirmations, start the thread.

        When this returns the subscriptions are active on the server: a message
        published afterwards will be delivered.

        Raises:
            ListenerError: Already started, no confirmation within
                ``timeout``, or the server could not be reached.
        """
        check_seconds("timeout", timeout, max=3600)
        self._final = None
        if self.sharded and isinstance(self.client, redis.RedisCluster):
            find = self.client.get_node_from_key
            nodes = {find(c).name for c in self.channels}  # type: ignore[no-untyped-call]
            self._shards = len(nodes)
        try:
            self.listener.start(timeout)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.listener.stop()
            raise ListenerError(
                f"{self.name}: cannot subscribe to {self.channels + self.patterns}: "
                f"{exc}",
                name=self.name,
            ) from exc
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the connection (idempotent).

        The counters are frozen at this point (``stats`` keeps returning
        them): the connection goes back to the client's pool, and what
        happens to it next is not this subscriber's business.

        Raises:
            ListenerError: The thread did not end within ``timeout`` seconds.
        """
        self.listener.stop(timeout)
        if self._final is None:
            self._final = self.stats

    def __enter__(self) -> Subscriber:
        return self if self.running else self.start()

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
        return self.listener.running

    @property
    def stats(self) -> SubscriberStats:
        """A snapshot of the counters (see :class:`SubscriberStats`)."""
        if self._final is not None:
            return self._final
        ls, n = self.listener.stats, self._n
        return SubscriberStats(
            received=n["received"],
            missed=n["missed"],
            recovered=n["recovered"],
            duplicates=n["duplicates"],
            dropped=n["dropped"],
            connects=self._shards + ls.reconnects,
            reconnects=ls.reconnects,
            unresponsive=ls.unresponsive,
            network_errors=ls.network_errors,
            callback_errors=ls.callback_errors,
            bad_messages=ls.bad_messages,
            downtime=ls.downtime,
            down=ls.down_since is not None,
            last_error=ls.last_error,
        )

    # --- the listener's callbacks (in its thread) ---------------------------
    def _on_subscribe(self, channel: str) -> None:
        if self.catch_up and channel in self.channels:
            key = history_key(channel, self.prefix)
            if channel not in self._resume:
                # First subscription: history starts at the stream's tail now.
                tail = self.client.xrevrange(key, "+", "-", count=1)
                self._resume[channel] = as_text(tail[0][0]) if tail else "0-0"
            else:
                self._pending.add(channel)
                self._catch_up(channel)
        if self.on_subscribe is not None:
            self.on_subscribe(channel)

    def _catch_up(self, channel: str, until: str | None = None) -> None:
        """Deliver the history entries after the last one handled (up to ``until``)."""
        key = history_key(channel, self.prefix)
        stop = "+" if until is None else f"({until}"
        while True:
            start = f"({self._resume[channel]}"
            # [(id, {field: value})]: redis-py declares a wider reply type.
            entries: Any = self.client.xrange(key, start, stop, count=_XRANGE_PAGE)
            for entry_id, fields in entries:
                text = as_text(fields.get("m", fields.get(b"m")))
                kind = "smessage" if self.sharded else "message"
                self._handle(channel, text, None, kind, as_text(entry_id))
            if len(entries) < _XRANGE_PAGE:
                break
        self._dedupe_upto[channel] = self._resume[channel]
        self._pending.discard(channel)

    def _on_message(self, msg: dict[str, Any]) -> None:
        channel = as_text(msg["channel"])
        pattern = as_text(msg.get("pattern"))
        self._handle(channel, as_text(msg["data"]), pattern, as_text(msg["type"]))

    def _handle(
        self,
        channel: str,
        data: Any,
        pattern: str | None,
        kind: str,
        recovered_id: str | None = None,
    ) -> None:
        now = self._clock()
        env = parse_envelope(channel, data)  # MalformedMessageError: counted
        source = seq = sent = stream_id = None
        if env is not None:
            source, seq, sent, data, stream_id = env
            stream_id = recovered_id or stream_id
            if stream_id is not None and channel in self._resume:
                if recovered_id is None and channel in self._pending:
                    self._catch_up(channel, until=stream_id)
                if not newer_id(stream_id, self._dedupe_upto.get(channel)):
                    self._n["duplicates"] += 1
                    return
                if newer_id(stream_id, self._resume[channel]):
                    self._resume[channel] = stream_id
            last = self._last_seq.get((source, channel))
            if last is not None and seq > last + 1:
                self._n["missed"] += seq - last - 1
            if last is None or seq > last:
                self._last_seq[(source, channel)] = seq
        if recovered_id is not None:
            self._n["recovered"] += 1
        item = Received(
            channel,
            data,
            pattern,
            kind,
            source,
            seq,
            sent,
            now,
            stream_id,
            recovered_id is not None,
        )
        self._deliver(item)

    def _deliver(self, item: Received) -> None:
        self.counts[item.channel] += 1
        try:
            if self.on_message is not None:
                self.on_message(item)
            else:
                try:
                    self._queue.put_nowait(item)
                except queue.Full:
                    self._n["dropped"] += 1
        finally:
            with self._arrived:
                self._n["received"] += 1
                self._arrived.notify_all()

    # --- reading ----------------------------------------------------------
    def get(self, timeout: float = 1.0) -> Received | None:
        """Next queued message, or None after ``timeout`` seconds."""
        check_seconds("timeout", timeout, max=3600)
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
        check_count("count", count)
        check_seconds("timeout", timeout, max=3600)
        with self._arrived:
            return self._arrived.wait_for(
                lambda: self._n["received"] >= count, timeout=timeout
            )
