"""What travels: the message envelope, the subscriber's counters, the publisher."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Publisher", "Received", "SubscriberStats", "is_pong"]


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
