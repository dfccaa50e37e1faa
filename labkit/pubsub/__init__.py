"""Library: pub/sub: a background subscriber and a numbering publisher.

Redis pub/sub is fire-and-forget: a message goes to the connections subscribed
*at that instant* and is then gone. Nothing is stored, so a subscriber that is
disconnected, or joins late, never sees what it missed. These helpers do not
change that (use Streams, notebook 06, when messages must not be lost); they
make it *visible*: :class:`Publisher` numbers every message per channel, and
:class:`Subscriber` counts the gaps, the reconnects and the silent periods.
"""

from labkit.pubsub._messages import Publisher, Received, SubscriberStats, is_pong
from labkit.pubsub._subscriber import Subscriber

__all__ = [
    "Publisher",
    "Received",
    "Subscriber",
    "SubscriberStats",
    "is_pong",
]
