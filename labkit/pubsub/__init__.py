"""Library: pub/sub: a background subscriber and a numbering publisher.

Redis pub/sub is fire-and-forget: a message goes to the connections subscribed
*at that instant* and is then gone. Nothing is stored, so a subscriber that is
disconnected, or joins late, never sees what it missed. :class:`Publisher`
numbers every message per channel and :class:`Subscriber` counts the gaps,
the reconnects and the silent periods, which makes the losses *visible*. To
make them *recoverable*, a Publisher with ``history=N`` also keeps the last N
messages of each channel in a capped stream, and a Subscriber with
``catch_up=True`` reads back what it missed after a reconnect. For work that
must never be lost, use a queue on Streams (:mod:`labkit.queues`).
"""

from labkit.pubsub._messages import Envelope, Received, SubscriberStats
from labkit.pubsub._publisher import MAX_HISTORY, Publisher, history_key
from labkit.pubsub._subscriber import Subscriber

__all__ = [
    "MAX_HISTORY",
    "Envelope",
    "Publisher",
    "Received",
    "Subscriber",
    "SubscriberStats",
    "history_key",
]
