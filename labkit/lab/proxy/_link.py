"""One proxied connection: its two sockets and a delay queue each way."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from labkit.lab.proxy._state import Direction

if TYPE_CHECKING:
    from labkit.lab.proxy._loop import Engine

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_RECV_BYTES = 256 * 1024
# A capped link is paced in slices worth this many seconds of its bandwidth, so
# that a big chunk trickles out instead of leaving in one burst at the end.
_PACE_S = 0.005
_NOT_YET = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY)


def close_socket(sock: socket.socket, *, rst: bool) -> None:
    """Close ``sock``; with ``rst``, by a TCP RST (``SO_LINGER`` 0), not a FIN."""
    if rst:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    sock.close()


def nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    with contextlib.suppress(OSError):  # no Nagle: the lab measures latency
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class End:
    """One socket of a link, what it still has to send, and what it wants."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.events = 0  # what the selector watches now
        self.outbuf = bytearray()  # released to this socket, not yet sent
        self.eof = False  # it closed its sending side (we read EOF)
        self.shut_when_sent = False  # an EOF is due to it once outbuf drains


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
        self.ended = False  # the source's EOF was passed on

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
            if data is None:  # pass the half-close on, behind the data
                self.queue.popleft()
                self.ended = True
                if dst.outbuf:
                    dst.shut_when_sent = True
                    break
                link.shut(dst)
                return
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
            sock = nonblocking(socket.socket(engine.family, socket.SOCK_STREAM))
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
            readable = down.reading and self.connected
            writable = bool(self.server.outbuf) or not self.connected
            self._watch(self.server, self._on_server, readable, writable)

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
        if end.shut_when_sent and not end.outbuf:
            end.shut_when_sent = False
            self.shut(end)
            if self.closed:
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

    def shut(self, end: End) -> None:
        """Send ``end`` our EOF; once both ways have ended, close the link."""
        assert end.sock is not None
        with contextlib.suppress(OSError):
            end.sock.shutdown(socket.SHUT_WR)
        if self.pipes["up"].ended and self.pipes["down"].ended:
            self.close(rst=False)
        else:
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
                close_socket(end.sock, rst=rst)
