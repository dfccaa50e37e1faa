"""The slow consumer: a subscriber that cannot keep up is cut off by the server.

Pub/sub's real production loss mode. The server queues each message in the
subscriber's *output buffer*; a subscriber that reads slower than messages
arrive makes that buffer grow (``omem`` in ``CLIENT LIST``) until
``client-output-buffer-limit pubsub`` is reached, and the server closes the
connection, dropping everything still queued. Meanwhile every ``PUBLISH``
counted that subscriber as a receiver.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from labkit.core.args import check_count, check_number, check_seconds
from labkit.core.wait import wait_until
from labkit.lab.proxy import Proxy
from labkit.pubsub import Publisher, Received, Subscriber
from labkit.server import Server, no_retry

__all__ = ["SlowConsumerResult", "omem_of", "slow_consumer"]

SUBSCRIBER_NAME = "slow-subscriber"


class SlowConsumerResult(NamedTuple):
    """What :func:`slow_consumer` saw.

    Attributes:
        limit: The server's ``client-output-buffer-limit`` for pubsub clients,
            in bytes (hard limit; no soft limit).
        size: Bytes of payload per message.
        published: Messages published before the server cut the subscriber off.
        queued_for: The sum of what those ``PUBLISH`` calls returned: how many
            times the server counted the subscriber as a receiver.
        samples: ``(messages published so far, omem in bytes)`` of the
            subscriber's connection, one pair per batch, from ``CLIENT LIST``.
        cut: True if the server closed the subscriber's connection (it left
            ``CLIENT LIST``, or the counter below went up).
        disconnections: The server's ``client_output_buffer_limit_disconnections``
            (None on servers that do not count them, e.g. Redis 7.0).
        received: Messages the subscriber actually got before the cut.
        missed: The gap it counted by sequence number, when the first message
            after its reconnect arrived.
        reconnects: Times its listener reconnected.
    """

    limit: int
    size: int
    published: int
    queued_for: int
    samples: list[tuple[int, int]]
    cut: bool
    disconnections: int | None
    received: int
    missed: int
    reconnects: int


def omem_of(client: object, name: str = SUBSCRIBER_NAME) -> int | None:
    """``omem`` (output buffer bytes) of the pub/sub connection named ``name``."""
    for entry in client.client_list(_type="pubsub"):  # type: ignore[attr-defined]
        if entry.get("name") == name:
            return int(entry["omem"])
    return None


def slow_consumer(
    *,
    limit: int = 256 * 1024,
    bandwidth: float = 20_000,
    size: int = 4096,
    batch: int = 20,
    max_bytes: int = 128 * 1024 * 1024,
    timeout: float = 30.0,
) -> SlowConsumerResult:
    """Publish to a subscriber behind a narrow link until the server drops it.

    Starts its own server (``client-output-buffer-limit pubsub <limit> 0 0``)
    and a :class:`~labkit.lab.proxy.Proxy` whose server-to-client direction
    is capped at ``bandwidth`` bytes/s; the subscriber reads through it. Then
    publishes ``batch`` messages of ``size`` bytes at a time, sampling the
    subscriber's ``omem`` after each batch, until the server disconnects it.
    Then heals the link, waits for the subscriber to reconnect, publishes one
    more message and reads the gap the subscriber counted.

    Args:
        limit: The output buffer limit in bytes (16 kB to 64 MB).
        bandwidth: The link's cap in bytes per second.
        size: Payload bytes per message.
        batch: Messages per pipeline between two samples.
        max_bytes: Give up after publishing this many payload bytes.
        timeout: Seconds allowed for the reconnect and the last message.
    """
    check_count("limit", limit, max=64 * 1024 * 1024)
    if limit < 16 * 1024:
        raise ValueError(f"limit={limit!r}: must be an int from 16384 to 67108864")
    check_number("bandwidth", bandwidth, min=1000, max=1e9, unit="of bytes/s")
    check_count("size", size, max=1024 * 1024)
    check_count("batch", batch, max=10_000)
    check_count("max_bytes", max_bytes, max=1024**3)
    check_seconds("timeout", timeout, max=600)
    config = {"client-output-buffer-limit": f"pubsub {limit} 0 0"}
    channel, payload = "lab:slow", "x" * size
    after = threading.Event()

    def heard(msg: Received) -> None:
        if msg.data == "after":
            after.set()

    with Server(config=config) as srv, Proxy.to(srv) as px:
        # A long socket timeout: behind the cap, reading one message may wait
        # on a machine busy with other work; only the server should cut it.
        sub_client = px.client(
            socket_timeout=30, retry=no_retry(), client_name=SUBSCRIBER_NAME
        )
        pub_client = srv.client()
        sub = Subscriber(
            sub_client,
            [channel],
            on_message=heard,
            health_check_interval=1.0,
            dead_after=10.0,
            # redis-py 8.1 reads a whole message within the poll timeout; on
            # this narrow link one message may take longer (see Subscriber).
            poll_interval=2.0,
            name="slow-subscriber",
        )
        try:
            sub.start()
            px.set_bandwidth(bandwidth, direction="down")
            pub = Publisher(pub_client)
            published = queued_for = 0
            samples: list[tuple[int, int]] = []

            def drops() -> int | None:
                stats = pub_client.info("stats")
                found = stats.get("client_output_buffer_limit_disconnections")
                return None if found is None else int(found)

            cut = False
            while published * size < max_bytes and not cut:
                queued_for += sum(pub.publish_many(channel, [payload] * batch))
                published += batch
                omem = omem_of(pub_client)
                cut = omem is None or bool(drops())
                if not cut:
                    samples.append((published, omem or 0))
            disconnections = drops()
            px.heal()  # what the proxy still held flows on; then end of stream
            back = wait_until(
                lambda: (
                    sub.stats.reconnects >= 1
                    and pub_client.pubsub_numsub(channel) == [(channel, 1)]
                ),
                timeout,
            )
            if not back:
                raise TimeoutError(f"the subscriber did not come back in {timeout} s")
            received = sub.stats.received
            pub.publish(channel, "after")
            if not after.wait(timeout):
                raise TimeoutError("the subscriber never got the message after its cut")
            stats = sub.stats
        finally:
            sub.stop(timeout=10)
            sub_client.close()
            pub_client.close()
    return SlowConsumerResult(
        limit,
        size,
        published,
        queued_for,
        samples,
        cut,
        disconnections,
        received,
        stats.missed,
        stats.reconnects,
    )
