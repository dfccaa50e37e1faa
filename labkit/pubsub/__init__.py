"""Pub/sub helpers: a background subscriber, a numbering publisher, fan-out timing.

Redis pub/sub is fire-and-forget: a message goes to the connections subscribed
*at that instant* and is then gone. Nothing is stored, so a subscriber that is
disconnected, or joins late, never sees what it missed. These helpers do not
change that (use Streams, notebook 06, when messages must not be lost); they
make it *visible*: :class:`Publisher` numbers every message per channel, and
:class:`Subscriber` counts the gaps, the reconnects and the silent periods.
"""

from labkit.core.wait import wait_until  # re-exported: notebook 05 uses it here
from labkit.pubsub._measure import delivery_matrix, measure_fanout
from labkit.pubsub._messages import Publisher, Received, SubscriberStats, is_pong
from labkit.pubsub._subscriber import Subscriber

__all__ = [
    "Publisher",
    "Received",
    "Subscriber",
    "SubscriberStats",
    "delivery_matrix",
    "is_pong",
    "measure_fanout",
    "wait_until",
]
