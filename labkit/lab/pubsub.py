"""Lab: measuring pub/sub: who received what, fan-out latency."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import redis

from labkit.pubsub import Publisher, Subscriber
from labkit.server import fresh_client

__all__ = ["delivery_matrix", "measure_fanout"]


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
    listen = fresh_client(client, max_connections=subscribers)
    pool = listen.connection_pool
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
