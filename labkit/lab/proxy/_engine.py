"""The proxy's engine: one asyncio loop in one thread, two pipes per connection.

Everything here runs on the proxy's own thread; :mod:`._proxy` is the only
caller, and it hands knob changes over with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import random
import selectors
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, ...] = ("up", "down")

# A capped link is paced in slices worth this many seconds of its bandwidth, so
# that a big chunk trickles out instead of leaving in one burst at the end.
_PACE_S = 0.005


@dataclass
class Knobs:
    """What the network does to one direction. Only the loop thread writes it."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth: float | None = None  # bytes per second; None = no cap
    held: bool = False  # black hole: nothing is read or delivered

    def clear(self) -> None:
        """Back to a perfect network."""
        self.delay_s = self.jitter_s = 0.0
        self.bandwidth = None
        self.held = False

    @property
    def plain(self) -> bool:
        """True when bytes may go straight through (the zero-overhead path)."""
        return not self.held and self.delay_s == 0 and self.bandwidth is None


@dataclass
class Network:
    """Both directions' knobs, and whether new connections are refused."""

    knobs: dict[Direction, Knobs] = field(
        default_factory=lambda: {"up": Knobs(), "down": Knobs()}
    )
    refusing: bool = False


@dataclass
class Counters:
    """Running totals, written by the loop thread, read by anyone."""

    bytes: dict[Direction, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    connections: int = 0
    open: int = 0
    refused: int = 0
    resets: int = 0
    upstream_failures: int = 0
    last_upstream_error: str = ""


class FineSelector(selectors.DefaultSelector):
    """The default selector, with sub-millisecond timeouts honoured.

    ``epoll`` (and ``poll``) round every timeout up to a whole millisecond, so
    an injected 0.1 ms delay would come out as 1 ms. Waits are split: the
    whole milliseconds go to the selector (which then wakes a little early,
    and the loop asks again with the rest), and a remainder below 1 ms is
    slept after a non-blocking poll. During that short sleep other sockets
    wait too, by less than 1 ms, and only while some delivery is that close.
    """

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        whole = math.floor(timeout * 1000) / 1000
        if whole > 0:
            return super().select(whole)
        ready = super().select(0)
        if ready:
            return ready
        time.sleep(timeout)
        return super().select(0)


def fine_timer_slack() -> None:
    """Ask Linux to wake this thread within 1 µs of a timer (default 50 µs)."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_timerslack = 29
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_timerslack, 1000, 0, 0, 0)


def reset_transport(transport: asyncio.Transport) -> None:
    """Close with a TCP RST (``SO_LINGER`` 0) instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    transport.abort()


class Engine:
    """State shared by every connection of one running proxy."""

    def __init__(
        self,
        upstream: tuple[str, int],
        net: Network,
        counters: Counters,
        rng: random.Random,
        *,
        connect_timeout: float,
        buffer_bytes: int,
    ) -> None:
        self.upstream = upstream
        self.net = net
        self.counters = counters
        self.rng = rng
        self.connect_timeout = connect_timeout
        self.buffer_bytes = buffer_bytes
        self.links: set[Link] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def serve(self, port: int, ready: asyncio.Future[int]) -> None:
        """Listen on 127.0.0.1:``port`` until :meth:`request_stop`."""
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await self.loop.create_server(
                lambda: Side(Link(self), "client"), "127.0.0.1", port
            )
        except OSError as exc:
            ready.set_exception(exc)
            return
        ready.set_result(int(server.sockets[0].getsockname()[1]))
        await self._stop.wait()
        server.close()
        for link in list(self.links):
            link.close(rst=True)
        await asyncio.sleep(0)  # let the transports run connection_lost
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)

    def request_stop(self) -> None:
        """Stop serving (call on the loop thread)."""
        if self._stop is not None:
            self._stop.set()

    def refresh(self, directions: tuple[Direction, ...] = DIRECTIONS) -> None:
        """Apply changed knobs to every open connection at once."""
        for link in list(self.links):
            for direction in directions:
                link.pipes[direction].flush()

    def reset_all(self) -> int:
        """RST every open connection, both sides; return how many."""
        links = list(self.links)
        for link in links:
            link.close(rst=True)
        self.counters.resets += len(links)
        return len(links)


class Pipe:
    """One direction of one connection: a delay queue with release times.

    A chunk read at ``t`` is released at ``max(t + delay, previous release)``,
    so latency delays every byte without limiting throughput and never
    reorders them. ``None`` in the queue is the sender's EOF.
    """

    def __init__(self, engine: Engine, link: Link, direction: Direction) -> None:
        self.engine = engine
        self.link = link
        self.direction = direction
        self.knobs = engine.net.knobs[direction]
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.dst_paused = False
        self.queue: deque[tuple[float, memoryview | None]] = deque()
        self.queued = 0
        self.last_release = 0.0
        self.free_at = 0.0  # when a capped link has sent what it already took
        self.timer: asyncio.TimerHandle | None = None

    def feed(self, data: bytes | None) -> None:
        """Take a chunk (or EOF) from the source."""
        dst = self.dst
        if data and not self.queue and dst and not self.dst_paused and self.knobs.plain:
            dst.write(data)  # the fast path: no timer, no copy
            self.engine.counters.bytes[self.direction] += len(data)
            return
        assert self.engine.loop is not None
        delay = self.knobs.delay_s
        if self.knobs.jitter_s:
            delay += self.engine.rng.uniform(-self.knobs.jitter_s, self.knobs.jitter_s)
        release = max(self.engine.loop.time() + delay, self.last_release)
        self.last_release = release
        self.queue.append((release, memoryview(data) if data else None))
        self.queued += len(data) if data else 0
        self.flush()

    def flush(self) -> None:
        """Deliver what is due; arm a timer for the rest; update reading."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        loop = self.engine.loop
        assert loop is not None
        knobs = self.knobs
        while self.queue and not knobs.held and self.dst and not self.dst_paused:
            release, data = self.queue[0]
            now = loop.time()
            if release > now:
                self.timer = loop.call_at(release, self.flush)
                break
            if data is None:
                self.link.close(rst=False)
                return
            if knobs.bandwidth is not None:
                if self.free_at > now:
                    self.timer = loop.call_at(self.free_at, self.flush)
                    break
                step = max(1, int(knobs.bandwidth * _PACE_S))
                if len(data) > step:
                    self.queue[0] = (release, data[step:])
                    data = data[:step]
                else:
                    self.queue.popleft()
                # A timer that fires a little late does not cost bandwidth.
                start = self.free_at if now - self.free_at < _PACE_S else now
                self.free_at = start + len(data) / knobs.bandwidth
            else:
                self.queue.popleft()
            self.queued -= len(data)
            self.dst.write(data)
            self.engine.counters.bytes[self.direction] += len(data)
        self.update_reading()

    def update_reading(self) -> None:
        """Read from the source only while the network would accept more.

        A black hole, a full queue or a full destination stops reading, so
        the sender's own buffers fill up as they would behind a slow or cut
        link (this is what makes a server's output buffer for a slow
        subscriber grow).
        """
        src = self.src
        if src is None or src.is_closing():
            return
        want = (
            not self.knobs.held
            and not self.dst_paused
            and self.queued < self.engine.buffer_bytes
        )
        if want and not src.is_reading():
            src.resume_reading()
        elif not want and src.is_reading():
            src.pause_reading()

    def drop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued = 0


class Link:
    """One proxied connection: the client's socket and ours to upstream."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pipes: dict[Direction, Pipe] = {
            d: Pipe(engine, self, d) for d in DIRECTIONS
        }
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False

    def accepted(self, transport: asyncio.Transport) -> None:
        engine, counters = self.engine, self.engine.counters
        counters.connections += 1
        self.client = transport
        if engine.net.refusing:
            counters.refused += 1
            self.closed = True
            reset_transport(transport)
            return
        engine.links.add(self)
        counters.open += 1
        self.pipes["up"].src = transport
        self.pipes["down"].dst = transport
        self.pipes["up"].update_reading()
        assert engine.loop is not None
        self.connecting = engine.loop.create_task(self._connect())

    async def _connect(self) -> None:
        engine = self.engine
        assert engine.loop is not None
        host, port = engine.upstream
        try:
            await asyncio.wait_for(
                engine.loop.create_connection(lambda: Side(self, "server"), host, port),
                engine.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            engine.counters.upstream_failures += 1
            why = str(exc) or f"no answer in {engine.connect_timeout:g} s"
            engine.counters.last_upstream_error = f"{host}:{port}: {why}"
            self.close(rst=True)  # the client sees "connection reset"

    def connected(self, transport: asyncio.Transport) -> None:
        if self.closed:
            transport.abort()
            return
        self.server = transport
        self.pipes["up"].dst = transport
        self.pipes["down"].src = transport
        self.pipes["up"].flush()
        self.pipes["down"].update_reading()

    def close(self, *, rst: bool) -> None:
        """Close both sockets: RST (``rst``) or FIN after pending writes."""
        if self.closed:
            return
        self.closed = True
        self.engine.links.discard(self)
        self.engine.counters.open -= 1
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        for pipe in self.pipes.values():
            pipe.drop()
        for transport in (self.client, self.server):
            if transport is not None:
                if rst:
                    reset_transport(transport)
                else:
                    transport.close()


class Side(asyncio.Protocol):
    """The protocol of one socket of a link: the client's or upstream's."""

    def __init__(self, link: Link, end: Literal["client", "server"]) -> None:
        self.link = link
        self.end = end
        self.out = link.pipes["up" if end == "client" else "down"]
        self.into = link.pipes["down" if end == "client" else "up"]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.end == "client":
            self.link.accepted(transport)
        else:
            self.link.connected(transport)

    def data_received(self, data: bytes) -> None:
        self.out.feed(data)

    def eof_received(self) -> bool:
        self.out.feed(None)  # travels behind the data still queued
        return True  # keep our half open until the EOF is delivered

    def pause_writing(self) -> None:
        self.into.dst_paused = True
        self.into.update_reading()

    def resume_writing(self) -> None:
        self.into.dst_paused = False
        self.into.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        # A socket we did not close ourselves went away: reset the other side
        # too, as a TCP proxy whose peer vanished does.
        self.link.close(rst=True)
