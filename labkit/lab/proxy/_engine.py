"""The proxy's engine: one selector loop in one thread, two pipes per connection.

A plain ``selectors`` loop rather than asyncio: at zero injected latency a
chunk costs one ``recv`` and one ``send`` and little Python around them, which
keeps the proxy's cost per round trip near that of the bare system calls
(asyncio's transports and handles cost about half as much again). Everything
here runs on the proxy's thread, except :meth:`Engine.bind` and
:meth:`Engine.call`, which :mod:`._proxy` calls from its own.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import errno
import heapq
import itertools
import math
import os
import random
import selectors
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, ...] = ("up", "down")

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_RECV_BYTES = 256 * 1024
# A capped link is paced in slices worth this many seconds of its bandwidth, so
# that a big chunk trickles out instead of leaving in one burst at the end.
_PACE_S = 0.005
_NOT_YET = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY)


@dataclass
class Knobs:
    """What the network does to one direction. Only the proxy thread writes it."""

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
    """Running totals, written by the proxy thread, read by anyone."""

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


def _close(sock: socket.socket, *, rst: bool) -> None:
    """Close ``sock``; with ``rst``, by a TCP RST (``SO_LINGER`` 0), not a FIN."""
    if rst:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    sock.close()


def _nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    with contextlib.suppress(OSError):  # no Nagle: the lab measures latency
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Engine:
    """The loop of one running proxy and the state its connections share."""

    def __init__(
        self,
        upstream: tuple[socket.AddressFamily, Any],
        net: Network,
        counters: Counters,
        rng: random.Random,
        *,
        connect_timeout: float,
        buffer_bytes: int,
    ) -> None:
        self.family, self.sockaddr = upstream
        self.net = net
        self.counters = counters
        self.rng = rng
        self.connect_timeout = connect_timeout
        self.buffer_bytes = buffer_bytes
        self.links: set[Link] = set()
        self.selector = FineSelector()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._calls: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._calls = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self.selector.register(self._wake_r, _READ, self._run_calls)
        self.listener: socket.socket | None = None
        self.running = False
        self._stopping = False

    # --- from the caller's thread -----------------------------------------
    def bind(self, port: int) -> int:
        """Listen on 127.0.0.1:``port`` (0: any free port); return the port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
        except OSError:
            listener.close()
            self.close()
            raise
        listener.setblocking(False)
        self.listener = listener
        self.selector.register(listener, _READ, self._accept)
        self.running = True
        return int(listener.getsockname()[1])

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the proxy thread; its result arrives in the future."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if not self.running:
            done.set_exception(RuntimeError("the proxy thread is not running"))
            return done
        self._calls.append((fn, done))
        with contextlib.suppress(BlockingIOError, OSError):  # already awake
            self._wake_w.send(b"\0")
        return done

    def request_stop(self) -> concurrent.futures.Future[Any]:
        """Ask the loop to close everything and end."""
        return self.call(lambda: setattr(self, "_stopping", True))

    # --- on the proxy thread ----------------------------------------------
    def run(self) -> None:
        """The loop: sockets, timers and calls, until stopped."""
        fine_timer_slack()
        timers = self._timers
        try:
            while not self._stopping:
                timeout = None
                if timers:
                    timeout = max(0.0, timers[0][0] - time.monotonic())
                for key, mask in self.selector.select(timeout):
                    key.data(mask)
                if timers:
                    now = time.monotonic()
                    while timers and timers[0][0] <= now:
                        heapq.heappop(timers)[2]()
        finally:
            self.running = False
            self.close()

    def close(self) -> None:
        """Reset every connection and close every socket (end of the loop)."""
        for link in list(self.links):
            link.close(rst=True)
        for sock in (self.listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self.selector.close()
        while self._calls:
            _, done = self._calls.popleft()
            if not done.done():
                done.set_exception(RuntimeError("the proxy stopped"))

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` at ``time.monotonic() == when`` (or soon after)."""
        heapq.heappush(self._timers, (when, next(self._seq), fn))

    def _run_calls(self, mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        while self._calls:
            fn, done = self._calls.popleft()
            try:
                done.set_result(fn())
            except Exception as exc:  # handed to the caller's thread
                done.set_exception(exc)

    def _accept(self, mask: int) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again later
                return
            self.counters.connections += 1
            if self.net.refusing:
                self.counters.refused += 1
                _close(sock, rst=True)
                continue
            Link(self, _nonblocking(sock))

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


class End:
    """One socket of a link, what it still has to send, and what it wants."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.events = 0  # what the selector watches now
        self.outbuf = bytearray()  # released to this socket, not yet sent
        self.eof = False  # its peer closed its sending side
        self.close_when_sent = False  # an EOF is due once outbuf is empty


class Pipe:
    """One direction of one connection: a delay queue with release times.

    A chunk read at ``t`` is released at ``max(t + delay, previous release)``,
    so latency delays every byte without limiting throughput and never
    reorders them. ``None`` in the queue is the sender's EOF.
    """

    def __init__(self, link: Link, direction: Direction, src: End, dst: End) -> None:
        self.link = link
        self.engine = link.engine
        self.direction = direction
        self.knobs = link.engine.net.knobs[direction]
        self.src, self.dst = src, dst
        self.queue: deque[tuple[float, memoryview | None]] = deque()
        self.queued = 0
        self.last_release = 0.0
        self.free_at = 0.0  # when a capped link has sent what it already took
        self.timer_at = math.inf

    def feed(self, data: bytes | None) -> bool:
        """Take a chunk (or EOF, ``None``) read from the source.

        Returns:
            True when the chunk went straight out whole (the fast path:
            nothing queued, nothing for the selector to change).
        """
        if data and not self.queue and self.knobs.plain and self.link.connected:
            return self._send(data)
        delay = self.knobs.delay_s
        if self.knobs.jitter_s:
            delay += self.engine.rng.uniform(-self.knobs.jitter_s, self.knobs.jitter_s)
        release = max(time.monotonic() + delay, self.last_release)
        self.last_release = release
        self.queue.append((release, memoryview(data) if data else None))
        self.queued += len(data) if data else 0
        self.flush()
        return False

    def _send(self, data: bytes | memoryview) -> bool:
        """Send now what the kernel takes, keep the rest; True if all went."""
        dst = self.dst
        assert dst.sock is not None
        sent = 0
        if not dst.outbuf:
            try:
                sent = dst.sock.send(data)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.link.close(rst=True)
                return False
        self.engine.counters.bytes[self.direction] += len(data)
        if sent == len(data):
            return True
        dst.outbuf += data[sent:]
        return False

    def flush(self) -> None:
        """Deliver what is due; arm a timer for the rest."""
        link, knobs, dst = self.link, self.knobs, self.dst
        if link.closed:
            return
        limit = self.engine.buffer_bytes
        while self.queue and not knobs.held and link.connected:
            if len(dst.outbuf) >= limit:
                break  # resumed when the destination drains
            release, data = self.queue[0]
            now = time.monotonic()
            if release > now:
                self._wake_at(release)
                break
            if data is None:
                self.queue.popleft()
                if not dst.outbuf:
                    link.close(rst=False)
                    return
                dst.close_when_sent = True  # closed once outbuf drains
                break
            if knobs.bandwidth is not None:
                if self.free_at > now:
                    self._wake_at(self.free_at)
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
            self._send(data)
            if link.closed:
                return
        link.update()

    def _wake_at(self, when: float) -> None:
        now = time.monotonic()
        if now < self.timer_at <= when:
            return  # an earlier timer is armed; it will re-arm for this
        self.timer_at = when
        self.engine.at(when, self._timer)

    def _timer(self) -> None:
        self.timer_at = math.inf
        self.flush()

    @property
    def reading(self) -> bool:
        """Read from the source only while the network would take more.

        A black hole, a full queue or a full destination stops reading, so
        the sender's own buffers fill up as they would behind a slow or cut
        link (this is what makes a server's output buffer grow for a slow
        subscriber).
        """
        return (
            not self.knobs.held
            and not self.src.eof
            and self.queued + len(self.dst.outbuf) < self.engine.buffer_bytes
        )


class Link:
    """One proxied connection: the client's socket and ours to upstream."""

    def __init__(self, engine: Engine, client: socket.socket) -> None:
        self.engine = engine
        self.client = End(client)
        self.server = End(None)
        self.pipes: dict[Direction, Pipe] = {
            "up": Pipe(self, "up", self.client, self.server),
            "down": Pipe(self, "down", self.server, self.client),
        }
        self.connected = False
        self.closed = False
        engine.links.add(self)
        engine.counters.open += 1
        self._connect()
        self.update()

    def _connect(self) -> None:
        engine = self.engine
        try:
            sock = _nonblocking(socket.socket(engine.family, socket.SOCK_STREAM))
            self.server.sock = sock
            err = sock.connect_ex(engine.sockaddr)
        except OSError as exc:  # e.g. out of file descriptors
            self._upstream_failed(str(exc))
            return
        if err == 0:
            self._connected()
        elif err in _NOT_YET:
            deadline = time.monotonic() + engine.connect_timeout
            engine.at(deadline, self._connect_timed_out)
        else:
            self._upstream_failed(os.strerror(err))

    def _connect_timed_out(self) -> None:
        if not self.connected and not self.closed:
            self._upstream_failed(f"no answer in {self.engine.connect_timeout:g} s")

    def _upstream_failed(self, why: str) -> None:
        counters = self.engine.counters
        counters.upstream_failures += 1
        counters.last_upstream_error = f"{self.engine.sockaddr}: {why}"
        self.close(rst=True)  # the client sees "connection reset by peer"

    def _connected(self) -> None:
        self.connected = True
        self.pipes["up"].flush()

    def update(self) -> None:
        """Tell the selector what each socket waits for now."""
        if self.closed:
            return
        up, down = self.pipes["up"], self.pipes["down"]
        self._watch(self.client, self._on_client, up.reading, bool(self.client.outbuf))
        if self.server.sock is not None:
            writable = bool(self.server.outbuf) or not self.connected
            self._watch(self.server, self._on_server, down.reading, writable)

    def _watch(
        self, end: End, callback: Callable[[int], None], read: bool, write: bool
    ) -> None:
        events = (_READ if read else 0) | (_WRITE if write else 0)
        if events == end.events:
            return
        selector, sock = self.engine.selector, end.sock
        assert sock is not None
        if end.events == 0:
            selector.register(sock, events, callback)
        elif events == 0:
            selector.unregister(sock)
        else:
            selector.modify(sock, events, callback)
        end.events = events

    def _on_client(self, mask: int) -> None:
        self._ready(self.client, self.pipes["up"], self.pipes["down"], mask)

    def _on_server(self, mask: int) -> None:
        if not self.connected and mask & _WRITE:
            assert self.server.sock is not None
            err = self.server.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._upstream_failed(os.strerror(err))
                return
            self._connected()
            mask &= ~_WRITE
        self._ready(self.server, self.pipes["down"], self.pipes["up"], mask)

    def _ready(self, end: End, out: Pipe, into: Pipe, mask: int) -> None:
        sock = end.sock
        assert sock is not None
        if mask & _WRITE and end.outbuf and not self.closed:
            try:
                sent = sock.send(end.outbuf)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close(rst=True)
                return
            del end.outbuf[:sent]
            into.flush()  # room again: release what waited
            if self.closed:
                return
        if end.close_when_sent and not end.outbuf:
            self.close(rst=False)
            return
        if mask & _READ and not self.closed:
            try:
                data = sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # reset by the peer: pass the reset on
                self.close(rst=True)
                return
            if not data:
                end.eof = True
            if out.feed(data or None):
                return
        self.update()

    def close(self, *, rst: bool) -> None:
        """Close both sockets: RST (``rst``) or FIN after what was sent."""
        if self.closed:
            return
        self.closed = True
        self.engine.links.discard(self)
        self.engine.counters.open -= 1
        for end in (self.client, self.server):
            if end.sock is not None:
                if end.events:
                    self.engine.selector.unregister(end.sock)
                    end.events = 0
                _close(end.sock, rst=rst)
