"""The :class:`Publisher`: numbered messages, optionally kept in a capped stream."""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis

from labkit.core.args import (
    DAY,
    check_callable,
    check_int,
    check_name,
    check_seconds,
    check_tag,
)
from labkit.core.clients import check_client
from labkit.core.keys import key_part
from labkit.core.scripts import Script, run_batch
from labkit.errors import WrongTypeError

__all__ = ["MAX_HISTORY", "PREFIX", "Publisher", "history_key"]

_R = TypeVar("_R")

#: Default key prefix of the history streams.
PREFIX = "labkit:pubsub"

#: Most entries a channel's history stream may keep.
MAX_HISTORY = 1_000_000

_PUBLISH = Script("pubsub_publish")


def check_prefix(prefix: Any) -> str:
    """A key prefix: a non-empty name without braces (they would break the tag)."""
    check_name("prefix", prefix, max_len=200)
    if "{" in prefix or "}" in prefix:
        raise ValueError(
            f"prefix={prefix!r}: must not contain '{{' or '}}' (the channel "
            "name becomes the key's hash tag)"
        )
    return str(prefix)


def history_key(channel: str, prefix: str = PREFIX) -> str:
    """The history stream kept beside ``channel``: ``<prefix>:{<channel>}``."""
    return f"{check_prefix(prefix)}:{{{key_part(check_tag('channel', channel))}}}"


def _check_data(data: Any) -> str:
    if isinstance(data, bool) or not isinstance(data, str | int):
        raise TypeError(f"data={data!r}: must be a str (or an int)")
    return str(data)


class Publisher:
    """Publish messages wrapped with a source id and a sequence number (and a time).

    Args:
        client: A ``redis.Redis`` or ``RedisCluster``.
        sharded: Use ``SPUBLISH`` (sharded pub/sub, Redis 7+): on a cluster
            the message travels only within the shard that owns the channel's
            slot, instead of being broadcast over the whole cluster bus.
        source: Id written into every message; a random one by default.
        history: Keep the last ``history`` messages of each channel in a
            stream beside it (0: keep nothing, plain fire-and-forget), so a
            :class:`~labkit.pubsub.Subscriber` with ``catch_up=True`` can read
            back what it missed. At most :data:`MAX_HISTORY`.
        history_ttl: Seconds a channel's history lives after its last publish
            (0.001 to 30 days).
        prefix: Key prefix of the history streams (default ``labkit:pubsub``).
        clock: A function returning seconds, called once per message and
            written into it as ``t`` (a subscriber's ``Received.sent_at``).
            None (the default) writes no time. Pass ``time.perf_counter`` to
            measure latency between processes of one machine (Linux and macOS
            share it), with a subscriber using the same clock; across hosts
            only ``time.time`` means anything, and only as far as their
            clocks agree.

    The envelope is JSON, ``{"src", "seq", "data"}`` (plus ``"t"`` with a
    clock, and ``"id"``, the stream entry id, with history). With history,
    one Lua script appends to the stream and publishes, so the two never
    disagree. History costs an ``XADD`` and a trim per message, and memory for
    ``history`` entries per channel.

    Keys:
        ``<prefix>:{<channel>}`` (stream), only with history: the channel's
        last messages (field m, the envelope); capped at history entries
        (exact MAXLEN, trimmed on every publish; trimming ignores readers, so
        a subscriber away for more than history messages loses the oldest),
        and expiring history_ttl seconds after the last publish. The channel
        is its hash tag: the stream lives in the channel's slot.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        sharded: bool = False,
        source: str | None = None,
        history: int = 0,
        history_ttl: float = 3600.0,
        prefix: str = PREFIX,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = check_client(client, owner="Publisher")
        if not isinstance(sharded, bool):
            raise TypeError(f"sharded={sharded!r}: must be True or False")
        self.sharded = sharded
        self.source = uuid.uuid4().hex[:8] if source is None else source
        check_name("source", self.source, max_len=64)
        self.history = check_int("history", history, min=0, max=MAX_HISTORY)
        self.history_ttl = check_seconds("history_ttl", history_ttl, max=30 * DAY)
        self.prefix = check_prefix(prefix)
        if clock is not None:
            check_callable("clock", clock, signature="clock() -> seconds")
        self.clock = clock
        #: The history entry id of the last message published (with history).
        self.last_id: str | None = None
        self._seq: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loaded = False

    def __repr__(self) -> str:
        kind = "sharded " if self.sharded else ""
        return f"<Publisher {self.source} {kind}history={self.history}>"

    def _channel(self, channel: Any) -> str:
        if self.history:
            return check_tag("channel", check_name("channel", channel))
        return check_name("channel", channel)

    def wrap(self, channel: str, data: str) -> str:
        """Number (and time, with a clock) one message for ``channel``, unsent."""
        channel = self._channel(channel)
        text = _check_data(data)
        with self._lock:
            self._seq[channel] += 1
            seq = self._seq[channel]
        return self._body(seq, text)

    def _body(self, seq: int, text: str) -> str:
        body: dict[str, object] = {"src": self.source, "seq": seq}
        if self.clock is not None:
            t = self.clock()
            if isinstance(t, bool) or not isinstance(t, int | float):
                raise TypeError(f"clock() returned {t!r}: must return seconds")
            if not math.isfinite(t):
                raise ValueError(f"clock() returned {t!r}: must be finite")
            body["t"] = t
        body["data"] = text
        return json.dumps(body)

    def _numbered(
        self, channel: str, texts: list[str], send: Callable[[list[str]], _R]
    ) -> _R:
        """Number ``texts`` and ``send`` them under one lock: numbers go out in order.

        Taking a number and sending it must be one step, or a thread that takes
        number 5 can send it after another thread's 6, and a subscriber counts
        5 as lost. A publish the server refuses (an error reply: nothing was
        written or sent) gives its numbers back, so it leaves no gap. Any other
        failure (a timeout, a dropped connection) keeps them: the message may
        have gone out, and a gap reported as loss beats a number sent twice.
        """
        with self._lock:
            first = self._seq[channel]
            messages = [self._body(first + i + 1, t) for i, t in enumerate(texts)]
            try:
                result = send(messages)
            except (WrongTypeError, redis.ResponseError):
                raise
            except BaseException:
                self._seq[channel] = first + len(texts)
                raise
            self._seq[channel] = first + len(texts)
            return result

    def history_key(self, channel: str) -> str:
        """The history stream of ``channel``."""
        return history_key(channel, self.prefix)

    def _script_call(
        self, channel: str, message: str
    ) -> tuple[Script, list[str], list[str | int]]:
        ttl_ms = max(1, round(self.history_ttl * 1000))
        args: list[str | int] = [channel, message, self.history, ttl_ms]
        args.append(int(self.sharded))
        return _PUBLISH, [self.history_key(channel)], args

    def _receivers(self, channel: str, reply: Any) -> int:
        receivers, second = int(reply[0]), reply[1]
        if receivers < 0:
            key = self.history_key(channel)
            raise WrongTypeError(
                f"key {key!r} holds a {second}, not the stream this publisher "
                f"keeps as channel {channel!r}'s history; nothing was published",
                key=key,
                found=str(second),
                expected="stream",
            )
        self.last_id = second if isinstance(second, str) else second.decode()
        return receivers

    def publish(self, channel: str, data: str | int = "") -> int:
        """Publish one message; return how many subscribers the server queued it for.

        The count is of subscriptions the message was *queued* to, not of
        subscribers that read it: a subscriber too slow to read is counted,
        and may be disconnected before the message reaches it. A return of 0
        means nobody was listening; without history, the message is gone.

        Raises:
            WrongTypeError: With history, the stream key holds another type.
        """
        channel = self._channel(channel)
        return self._numbered(
            channel, [_check_data(data)], lambda m: self._send(channel, m[0])
        )

    def _send(self, channel: str, message: str) -> int:
        if self.history:
            script, keys, args = self._script_call(channel, message)
            return self._receivers(channel, script(self.client, keys, args))
        if self.sharded:
            return int(self.client.spublish(channel, message))
        return int(self.client.publish(channel, message))

    def queue(self, pipe: Any, channel: str, data: str | int = "") -> None:
        """Add one publish to ``pipe`` (a pipeline or a MULTI), numbered now.

        For publishing in the same transaction as other commands. With
        history the call is the script's ``EVALSHA``, so the script is loaded
        first (once per publisher); its reply in ``execute()`` is
        ``[receivers, entry id]``, or ``[-1, type]`` if the stream key holds
        another type (nothing written).
        """
        channel = self._channel(channel)
        message = self.wrap(channel, _check_data(data))
        if self.history:
            if not self._loaded:
                _PUBLISH.load(self.client)
                self._loaded = True
            script, keys, args = self._script_call(channel, message)
            script.queue(pipe, keys, args)
        elif self.sharded:
            pipe.spublish(channel, message)
        else:
            pipe.publish(channel, message)

    def publish_many(self, channel: str, items: Iterable[str | int]) -> list[int]:
        """Publish several messages in one round trip; receivers per message.

        Raises:
            TypeError: ``items`` is a bare str (it would be split into letters).
        """
        channel = self._channel(channel)
        if isinstance(items, str | bytes) or not isinstance(items, Iterable):
            raise TypeError(
                f"items={items!r}: must be a list of messages (a bare str is one "
                f"message: write [{items!r}])"
            )
        texts = [_check_data(item) for item in items]  # all checked, then numbered
        return self._numbered(channel, texts, lambda m: self._send_many(channel, m))

    def _send_many(self, channel: str, messages: list[str]) -> list[int]:
        if self.history:
            calls = [self._script_call(channel, m) for m in messages]
            replies = run_batch(self.client, calls)
            return [self._receivers(channel, reply) for reply in replies]
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            if self.sharded:
                pipe.spublish(channel, message)
            else:
                pipe.publish(channel, message)
        return [int(n) for n in pipe.execute()]
