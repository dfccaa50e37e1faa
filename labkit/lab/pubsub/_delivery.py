"""Who received what: the delivery matrix of the pub/sub visualizer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from labkit.pubsub import Subscriber

__all__ = ["delivery_matrix"]


def delivery_matrix(
    subscribers: Mapping[str, Subscriber], channels: Iterable[str]
) -> dict[str, dict[str, int]]:
    """Messages received per subscriber and channel: ``{name: {channel: n}}``."""
    channels = list(channels)
    return {
        name: {c: sub.counts.get(c, 0) for c in channels}
        for name, sub in subscribers.items()
    }
