"""What travels: the message envelope, what a subscriber received, its counters."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from labkit.errors import MalformedMessageError

__all__ = ["Envelope", "Received", "SubscriberStats", "newer_id", "parse_envelope"]

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
#: How an envelope starts (with a stream id when the publisher keeps history).
_PREFIXES = ('{"src"', '{"id"')


class Envelope(NamedTuple):
    """A :class:`~labkit.pubsub.Publisher` message, unwrapped.

    Attributes:
        source: The publisher's id.
        seq: Its number for this message on this channel (1, 2, ...).
        sent_at: The publisher's ``clock()`` at publish (its ``t``), or None if
            it has no clock.
        data: The payload.
        id: The history stream's entry id (``"<ms>-<n>"``), if kept.
    """

    source: str
    seq: int
    sent_at: float | None
    data: str
    id: str | None


def parse_envelope(channel: str, text: Any) -> Envelope | None:
    """Unwrap a publisher's envelope; None for any other (plain) message.

    Raises:
        MalformedMessageError: ``text`` starts like an envelope but is not a
            valid one (bad JSON, a missing or mistyped field).
    """
    if not isinstance(text, str) or not text.startswith(_PREFIXES):
        return None
    try:
        body = json.loads(text)
        source, seq, data = body["src"], body["seq"], body["data"]
        sent = body.get("t")
        stream_id = body.get("id")
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedMessageError(
            f"channel {channel!r}: not a valid envelope ({exc})",
            channel=channel,
            data=text[:200],
        ) from exc
    valid = (
        isinstance(source, str)
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 1
        and (
            sent is None
            or (
                isinstance(sent, int | float)
                and not isinstance(sent, bool)
                and math.isfinite(sent)
            )
        )
        and isinstance(data, str)
        and (stream_id is None or bool(_STREAM_ID.match(str(stream_id))))
    )
    if not valid:
        raise MalformedMessageError(
            f"channel {channel!r}: envelope with a missing or mistyped field "
            "(src: str, seq: int >= 1, t: number if present, data: str, "
            "id: '<ms>-<n>')",
            channel=channel,
            data=text[:200],
        )
    return Envelope(source, seq, None if sent is None else float(sent), data, stream_id)


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, n = stream_id.partition("-")
    return int(ms), int(n or 0)


def newer_id(a: str, b: str | None) -> bool:
    """True if stream id ``a`` comes after ``b`` (any id is newer than None)."""
    return b is None or _id_key(a) > _id_key(b)


class Received(NamedTuple):
    """One message as a :class:`~labkit.pubsub.Subscriber` received it.

    Attributes:
        channel: Channel it was published on.
        data: The payload (unwrapped if it came from a Publisher).
        pattern: The matching pattern for pattern subscriptions, else None.
        kind: ``"message"``, ``"pmessage"`` or ``"smessage"`` (sharded).
        source: Id of the Publisher that sent it, else None.
        seq: The publisher's number for it on this channel (1, 2, ...), else None.
        sent_at: The publisher's ``clock()`` at publish, if it has a clock
            (``Publisher(clock=...)``), else None.
        received_at: The subscriber's ``clock()`` (``time.perf_counter`` by
            default) when the listener got it.
        id: The history stream's entry id, when the publisher keeps history.
        recovered: True if it was read back from the history stream after a
            gap, not received live.
    """

    channel: str
    data: str
    pattern: str | None
    kind: str
    source: str | None
    seq: int | None
    sent_at: float | None
    received_at: float
    id: str | None = None
    recovered: bool = False

    @property
    def latency(self) -> float | None:
        """Publish-to-receive seconds; None unless the publisher has a clock.

        Meaningful only when publisher and subscriber use the same clock
        (``time.perf_counter`` on one machine; ``time.time`` across hosts, as
        far as their clocks agree).
        """
        return None if self.sent_at is None else self.received_at - self.sent_at


@dataclass(frozen=True)
class SubscriberStats:
    """A snapshot of a :class:`~labkit.pubsub.Subscriber`'s counters.

    Attributes:
        received: Messages handed to the callback or queue (recovered ones too).
        missed: Numbered messages that never arrived (gaps in ``seq``).
        recovered: Messages read back from the history stream after a gap.
        duplicates: Live messages skipped because a catch-up had already
            delivered them.
        dropped: Messages dropped because the local queue was full.
        connects: Connections made: the first (one per shard when sharded)
            plus every reconnect.
        reconnects: Connections reopened after being lost.
        unresponsive: Connections the watchdog closed (PING unanswered).
        network_errors: Reads that failed because the connection broke.
        callback_errors: Exceptions raised by the user's callbacks.
        bad_messages: Envelopes that could not be parsed (not delivered).
        downtime: Seconds disconnected, over the outages that have ended.
        down: True while disconnected now.
        last_error: The most recent exception of any kind above, or None.
    """

    received: int = 0
    missed: int = 0
    recovered: int = 0
    duplicates: int = 0
    dropped: int = 0
    connects: int = 0
    reconnects: int = 0
    unresponsive: int = 0
    network_errors: int = 0
    callback_errors: int = 0
    bad_messages: int = 0
    downtime: float = 0.0
    down: bool = False
    last_error: BaseException | None = None
