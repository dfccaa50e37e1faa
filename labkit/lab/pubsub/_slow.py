"""The slow consumer: a subscriber that cannot keep up is cut off by the server.

Pub/sub's real production loss mode. The server queues each message in the
subscriber's *output buffer*; a subscriber that reads slower than messages
arrive makes that buffer grow (``omem`` in ``CLIENT LIST``) until
``client-output-buffer-limit pubsub`` is reached, and the server closes the
connection, dropping everything still queued. Meanwhile every ``PUBLISH``
counted that subscriber as a receiver.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from labkit.core.args import check_count, check_number, check_seconds
from labkit.core.wait import wait_until
from labkit.lab.proxy import Proxy
from labkit.pubsub import Publisher, Subscriber
from labkit.server import Server, no_retry

__all__ = ["SlowConsumerResult", "SlowLink", "omem_of", "slow_consumer"]

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


class SlowLink:
    """A server of its own, and one subscriber behind a narrow link to it.

    The harness of the slow-consumer experiment: it starts a server whose
    ``client-output-buffer-limit`` for pubsub clients is ``limit`` bytes (hard
    limit, no soft one), a :class:`~labkit.lab.proxy.Proxy` in front of it
    whose server-to-client direction is capped at ``bandwidth`` bytes/s, and a
    :class:`~labkit.pubsub.Subscriber` (connection name ``slow-subscriber``) on
    :attr:`channel` that reads through the proxy. The caller publishes
    through :attr:`client`, a direct connection to the server.

    Args:
        limit: The output buffer limit in bytes (16 kB to 64 MB).
        bandwidth: The link's cap in bytes per second.
    """

    channel = "lab:slow"

    def __init__(self, *, limit: int = 256 * 1024, bandwidth: float = 20_000) -> None:
        check_count("limit", limit, max=64 * 1024 * 1024)
        if limit < 16 * 1024:
            raise ValueError(f"limit={limit!r}: must be an int from 16384 to 67108864")
        check_number("bandwidth", bandwidth, min=1000, max=1e9, unit="of bytes/s")
        self.limit, self.bandwidth = limit, bandwidth
        self.server: Server | None = None
        self.proxy: Proxy | None = None
        self.client: Any = None
        self.subscriber: Subscriber | None = None
        self._sub_client: Any = None

    def start(self) -> SlowLink:
        """Start the server, the proxy and the subscriber; then cap the link."""
        config = {"client-output-buffer-limit": f"pubsub {self.limit} 0 0"}
        try:
            self.server = Server(config=config).start()
            self.proxy = Proxy.to(self.server).start()
            # A long socket timeout: behind the cap, reading one message may
            # wait on a busy machine; only the server should cut it off.
            self._sub_client = self.proxy.client(
                socket_timeout=30, retry=no_retry(), client_name=SUBSCRIBER_NAME
            )
            self.client = self.server.client()
            self.subscriber = Subscriber(
                self._sub_client,
                [self.channel],
                health_check_interval=1.0,
                dead_after=10.0,
                # redis-py 8.1 reads a whole message within the poll timeout;
                # on this narrow link one message may take longer.
                poll_interval=2.0,
                name=SUBSCRIBER_NAME,
            ).start()
            self.proxy.set_bandwidth(self.bandwidth, direction="down")
        except BaseException:
            self.stop()
            raise
        return self

    def disconnections(self) -> int | None:
        """The server's ``client_output_buffer_limit_disconnections`` (None on 7.0)."""
        found = self.client.info("stats").get(
            "client_output_buffer_limit_disconnections"
        )
        return None if found is None else int(found)

    def stop(self) -> None:
        """Stop the subscriber, the proxy and the server."""
        if self.subscriber is not None:
            self.subscriber.stop(timeout=10)
        for client in (self._sub_client, self.client):
            if client is not None:
                client.close()
        if self.proxy is not None:
            self.proxy.stop()
        if self.server is not None:
            self.server.stop()
        self.subscriber = self.proxy = self.server = None
        self._sub_client = self.client = None

    def __enter__(self) -> SlowLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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

    The whole experiment on a :class:`SlowLink` (the notebook runs the same
    steps in its own cells): publish ``batch`` messages of ``size`` bytes at
    a time, sampling the subscriber's ``omem`` after each batch, until the
    server disconnects it; then heal the link, wait for the subscriber to
    reconnect, publish one more message and read the gap it counted.

    Args:
        limit: The output buffer limit in bytes (16 kB to 64 MB).
        bandwidth: The link's cap in bytes per second.
        size: Payload bytes per message.
        batch: Messages per pipeline between two samples.
        max_bytes: Give up after publishing this many payload bytes.
        timeout: Seconds allowed for the reconnect and the last message.
    """
    check_count("size", size, max=1024 * 1024)
    check_count("batch", batch, max=10_000)
    check_count("max_bytes", max_bytes, max=1024**3)
    check_seconds("timeout", timeout, max=600)
    with SlowLink(limit=limit, bandwidth=bandwidth) as link:
        assert link.subscriber is not None and link.proxy is not None
        sub, channel = link.subscriber, link.channel
        pub = Publisher(link.client)
        published = queued_for = 0
        samples: list[tuple[int, int]] = []
        while published * size < max_bytes:
            omem = omem_of(link.client)
            if omem is None or link.disconnections():
                break
            samples.append((published, omem))
            queued_for += sum(pub.publish_many(channel, ["x" * size] * batch))
            published += batch
        cut = omem_of(link.client) is None or bool(link.disconnections())
        disconnections = link.disconnections()
        link.proxy.heal()  # what the proxy still held flows on; then end of stream
        back = wait_until(
            lambda: (
                sub.stats.reconnects >= 1
                and link.client.pubsub_numsub(channel) == [(channel, 1)]
            ),
            timeout,
        )
        if not back:
            raise TimeoutError(f"the subscriber did not come back in {timeout} s")
        received = sub.stats.received
        pub.publish(channel, "after")
        if not sub.wait_for(received + 1, timeout=timeout):
            raise TimeoutError("the subscriber never got the message after its cut")
        stats = sub.stats
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
