"""The proxy's thread: one selector loop, its timers, and calls from outside.

A plain ``selectors`` loop rather than asyncio: at zero injected latency a
chunk costs one ``recv`` and one ``send`` and little Python around them. On
the lab's 2-core VM, asyncio's transports and handles added about a third
more to a proxied GET. Everything here runs on the proxy's thread, except
:meth:`Engine.bind` and :meth:`Engine.call`, which :mod:`._proxy` calls.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import heapq
import itertools
import math
import random
import selectors
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from labkit.lab.proxy._link import Link, close_socket, nonblocking
from labkit.lab.proxy._state import DIRECTIONS, Counters, Direction, Network

_READ = selectors.EVENT_READ


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
        whole_ms = math.floor(timeout * 1000)
        if whole_ms > 0:  # just under, or epoll's rounding up adds 1 ms
            return super().select(whole_ms / 1000 - 1e-6)
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
            except OSError:  # e.g. out of file descriptors: retry in 0.1 s
                self.selector.unregister(self.listener)
                self.at(time.monotonic() + 0.1, self._listen_again)
                return
            self.counters.connections += 1
            if self.net.refusing:
                self.counters.refused += 1
                close_socket(sock, rst=True)
                continue
            Link(self, nonblocking(sock))

    def _listen_again(self) -> None:
        if self.listener is not None and not self._stopping:
            self.selector.register(self.listener, _READ, self._accept)

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
