"""``Proxy``: the public face of one fault-injecting TCP proxy."""

from __future__ import annotations

import atexit
import contextlib
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import redis

from labkit.lab.errors import ProxyError
from labkit.lab.proxy._loop import Engine
from labkit.lab.proxy._state import (
    DIRECTIONS,
    Counters,
    Direction,
    Knobs,
    Network,
    ProxyEvent,
    ProxyStats,
)

if TYPE_CHECKING:
    from labkit.server import Server

__all__ = ["Proxy", "ProxyEvent", "ProxyStats"]

MAX_LATENCY_MS = 60_000.0
MAX_BANDWIDTH = 10_000_000_000  # bytes per second
_CALL_TIMEOUT_S = 5.0

DirectionArg = Literal["both", "up", "down"]


_running: set[Proxy] = set()
_running_lock = threading.Lock()


def running_proxies() -> list[Proxy]:
    """Every proxy started in this process and not stopped yet."""
    with _running_lock:
        return list(_running)


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        proxies = list(_running)
    for proxy in proxies:
        with contextlib.suppress(Exception):
            proxy.stop()


def _number(name: str, value: object, unit: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name}={value!r}: expected a number of {unit} (int or float), "
            f"not {type(value).__name__}"
        )
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(
            f"{name}={value!r}: must be a finite number of {unit} in {low:g}..{high:g}"
        )
    return float(value)


def _directions(direction: object) -> tuple[Direction, ...]:
    if direction == "both":
        return DIRECTIONS
    if direction == "up":
        return ("up",)
    if direction == "down":
        return ("down",)
    raise ValueError(
        f"direction={direction!r}: expected 'both', 'up' (client to server) "
        "or 'down' (server to client)"
    )


class Proxy:
    """A TCP proxy on 127.0.0.1 that adds latency, caps bandwidth and cuts links.

    Args:
        upstream_host: Where to forward to (a server's host).
        upstream_port: Its port.
        port: Port to listen on; by default a free one chosen by the OS
            (kept across :meth:`stop` / :meth:`start`).
        seed: Seed of the ``random.Random`` that draws the jitter (None:
            from the OS, different every run).
        connect_timeout: Seconds to wait for upstream to accept a connection;
            when it does not (or refuses), the client's connection is reset.
        buffer_bytes: Bytes the proxy holds per direction and connection
            before it stops reading from the sender (the "network's" buffer).
        password: Password :meth:`client` uses (:meth:`to` fills it in).

    "Up" is client to server, "down" is server to client. Latency is added
    per direction, so a request and its reply cross it twice: a round trip of
    ``R`` ms is ``set_latency(R / 2)`` or :meth:`set_rtt`. Every knob can be
    turned while traffic flows and applies to bytes that arrive after it.

    Example:
        >>> with Server() as srv, Proxy.to(srv) as px:
        ...     r = px.client(socket_timeout=1)
        ...     px.set_rtt(5)          # every round trip now costs ~5 ms more
        ...     px.blackhole()         # a partition: r.ping() times out
        ...     px.heal()              # back to normal, nothing restarted
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        port: int | None = None,
        seed: int | None = 0,
        connect_timeout: float = 2.0,
        buffer_bytes: int = 256 * 1024,
        password: str | None = None,
    ) -> None:
        if not isinstance(upstream_host, str) or not upstream_host:
            raise ValueError(f"upstream_host={upstream_host!r}: expected a host name")
        for name, value in (("upstream_port", upstream_port), ("port", port)):
            if value is None and name == "port":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}={value!r}: expected an int from 1 to 65535")
            if not 0 < value < 65536:
                raise ValueError(f"{name}={value!r}: expected an int from 1 to 65535")
        if isinstance(buffer_bytes, bool) or not isinstance(buffer_bytes, int):
            raise TypeError(f"buffer_bytes={buffer_bytes!r}: expected an int")
        if not 1024 <= buffer_bytes <= 1 << 30:
            raise ValueError(f"buffer_bytes={buffer_bytes!r}: expected 1024..2**30")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = "127.0.0.1"
        self.connect_timeout = _number(
            "connect_timeout", connect_timeout, "seconds", 0.001, 60
        )
        self.password = password
        self._port = port
        self._buffer_bytes = buffer_bytes
        self._net = Network()
        self._counters = Counters()
        self._rng = random.Random(seed)
        self._events: list[ProxyEvent] = []
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def to(cls, server: Server, **kwargs: Any) -> Proxy:
        """A proxy in front of ``server``, whose password :meth:`client` uses."""
        kwargs.setdefault("password", server.password)
        return cls(server.host, server.port, **kwargs)

    # --- properties -------------------------------------------------------
    @property
    def port(self) -> int:
        """The port clients connect to (known once started)."""
        if self._port is None:
            raise RuntimeError("the proxy has no port until start() is called")
        return self._port

    @property
    def running(self) -> bool:
        """True while the proxy's thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stats(self) -> ProxyStats:
        """The counters now (see :class:`ProxyStats`)."""
        c = self._counters
        with self._lock:
            set_at = {e.knob: e.at for e in self._events}
        return ProxyStats(
            c.bytes["up"], c.bytes["down"], c.connections, c.open, c.refused,
            c.resets, c.upstream_failures, set_at,
        )  # fmt: skip

    @property
    def events(self) -> list[ProxyEvent]:
        """Every knob change so far, oldest first (a timeline for plots)."""
        with self._lock:
            return list(self._events)

    @property
    def last_upstream_error(self) -> str:
        """Why the last upstream connection failed ("" if none did)."""
        return self._counters.last_upstream_error

    def __repr__(self) -> str:
        up, down = self._net.knobs["up"], self._net.knobs["down"]

        def knob(k: Knobs) -> str:
            held = " blackhole" if k.held else ""
            bw = f" {k.bandwidth:g} B/s" if k.bandwidth is not None else ""
            return f"{k.delay_s * 1000:g}±{k.jitter_s * 1000:g} ms{bw}{held}"

        state = f"port={self._port}" if self.running else "stopped"
        refusing = " refusing" if self._net.refusing else ""
        return (
            f"<Proxy {state} -> {self.upstream_host}:{self.upstream_port} "
            f"up={knob(up)} down={knob(down)}{refusing}>"
        )

    # --- lifecycle --------------------------------------------------------
    def start(self) -> Self:
        """Start listening and forwarding, in one background thread.

        Returns:
            ``self``, so that ``px = Proxy(host, port).start()`` reads well.

        Raises:
            ProxyError: The upstream host name does not resolve, or the port
                cannot be bound (the message says which).
        """
        upstream = f"{self.upstream_host}:{self.upstream_port}"
        with self._lock:
            if self._thread is not None:
                return self
            try:  # resolved here, so the proxy thread never blocks on DNS
                family, _, _, _, sockaddr = socket.getaddrinfo(
                    self.upstream_host, self.upstream_port, type=socket.SOCK_STREAM
                )[0]
            except OSError as exc:
                raise ProxyError(
                    f"upstream_host={self.upstream_host!r} does not resolve: {exc}",
                    upstream=upstream,
                    port=self._port,
                ) from exc
            engine = Engine(
                (family, sockaddr),
                self._net,
                self._counters,
                self._rng,
                connect_timeout=self.connect_timeout,
                buffer_bytes=self._buffer_bytes,
            )
            try:
                self._port = engine.bind(self._port or 0)
            except OSError as exc:
                raise ProxyError(
                    f"proxy to {upstream} could not listen on "
                    f"127.0.0.1:{self._port or 'any port'}: {exc}",
                    upstream=upstream,
                    port=self._port,
                ) from exc
            thread = threading.Thread(
                target=engine.run,
                name=f"labkit-proxy:{self._port}->{self.upstream_port}",
                daemon=True,  # never holds up interpreter exit; atexit stops it
            )
            thread.start()
            self._engine, self._thread = engine, thread
        with _running_lock:
            _running.add(self)
        return self

    def stop(self, timeout: float = _CALL_TIMEOUT_S) -> None:
        """Reset every connection, stop listening and join the thread.

        Stopping a stopped proxy does nothing. Knobs and counters are kept,
        and :meth:`start` listens again on the same port.

        Raises:
            ProxyError: The thread did not end within ``timeout`` seconds.
        """
        with self._lock:
            engine, thread = self._engine, self._thread
            self._engine = self._thread = None
            if engine is not None:
                engine.request_stop()
        with _running_lock:
            _running.discard(self)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise ProxyError(
                    f"proxy thread for {self.upstream_host}:{self.upstream_port} "
                    f"did not stop within {timeout:g} s",
                    upstream=f"{self.upstream_host}:{self.upstream_port}",
                    port=self._port,
                )

    def close(self) -> None:
        """Same as :meth:`stop` (for symmetry with ``Server.close``)."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- knobs ------------------------------------------------------------
    def _apply(self, change: Callable[[Engine | None], Any], *knobs: str) -> Any:
        """Run ``change`` on the proxy thread (here if stopped) and log it.

        Args:
            change: Takes the engine (None when stopped) and alters the
                network; what it returns is returned.
            knobs: ``"name=value"`` entries for :attr:`events`.
        """
        with self._lock:
            now = time.perf_counter()
            for entry in knobs:
                name, _, value = entry.partition("=")
                self._events.append(ProxyEvent(now, name, value))
            engine = self._engine
            if engine is None:
                return change(None)
            done = engine.call(lambda: change(engine))
        return done.result(timeout=_CALL_TIMEOUT_S)

    def set_latency(
        self, ms: float, jitter_ms: float = 0.0, *, direction: DirectionArg = "both"
    ) -> None:
        """Delay every chunk by ``ms`` ± ``jitter_ms`` milliseconds, one way.

        Args:
            ms: Added one-way delay, 0..60000 ms. A round trip crosses the
                proxy twice, so ``set_latency(0.1)`` adds 0.2 ms per round
                trip; :meth:`set_rtt` says it the other way round.
            jitter_ms: Each chunk's delay is drawn uniformly from
                ``ms - jitter_ms .. ms + jitter_ms`` (seeded RNG), so
                ``0 <= jitter_ms <= ms``. Bytes are never reordered: a chunk
                is released no earlier than the one before it.
            direction: ``"up"`` (client to server), ``"down"`` or ``"both"``.

        Raises:
            TypeError: A value is not a number (booleans are not).
            ValueError: A value is out of range, NaN or infinite.

        Latency does not limit throughput: a pipeline of many commands still
        flows at full speed, each byte arriving ``ms`` later.
        """
        delay = _number("set_latency: ms", ms, "milliseconds", 0, MAX_LATENCY_MS)
        jitter = _number(
            "set_latency: jitter_ms", jitter_ms, "milliseconds", 0, MAX_LATENCY_MS
        )
        if jitter > delay:
            raise ValueError(
                f"set_latency: jitter_ms={jitter_ms!r} is more than ms={ms!r}: the "
                "delay is ms ± jitter_ms and cannot go below 0"
            )
        dirs = _directions(direction)

        def change(engine: Engine | None) -> None:
            for d in dirs:
                self._net.knobs[d].delay_s = delay / 1000
                self._net.knobs[d].jitter_s = jitter / 1000
            if engine:
                engine.refresh(dirs)

        self._apply(change, *(f"latency_{d}={delay:g}±{jitter:g} ms" for d in dirs))

    def set_rtt(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Add ``ms`` (± ``jitter_ms``) to every round trip: half each way.

        ``set_rtt(0.2)`` is ``set_latency(0.1)`` in both directions: every
        request/reply round trip grows by 0.2 ms, on top of the proxy's own
        hop (``benchmarks/bench_proxy.py`` measures both). The jitter is
        split the same way, so a round trip varies by up to ``jitter_ms``.
        """
        rtt = _number("set_rtt: ms", ms, "milliseconds", 0, MAX_LATENCY_MS)
        jitter = _number(
            "set_rtt: jitter_ms", jitter_ms, "milliseconds", 0, MAX_LATENCY_MS
        )
        if jitter > rtt:
            raise ValueError(
                f"set_rtt: jitter_ms={jitter_ms!r} is more than ms={ms!r}: the "
                "delay is ms ± jitter_ms and cannot go below 0"
            )
        self.set_latency(rtt / 2, jitter / 2)

    def set_bandwidth(
        self, bytes_per_s: float | None, *, direction: DirectionArg = "both"
    ) -> None:
        """Cap each connection's throughput, per direction; None lifts the cap.

        Args:
            bytes_per_s: 1..10_000_000_000 bytes per second, or None.
            direction: ``"up"``, ``"down"`` or ``"both"``.

        Raises:
            TypeError: Not a number or None.
            ValueError: Out of range, NaN or infinite.

        A capped link fills its buffer (``buffer_bytes``) and then stops
        reading, so the sender's buffers fill up: behind ``direction="down"``
        a subscriber looks slow to the server, whose output buffer grows.
        """
        cap = None
        if bytes_per_s is not None:
            name, unit = "set_bandwidth: bytes_per_s", "bytes per second"
            cap = _number(name, bytes_per_s, unit, 1, MAX_BANDWIDTH)
        dirs = _directions(direction)

        def change(engine: Engine | None) -> None:
            for d in dirs:
                self._net.knobs[d].bandwidth = cap
            if engine:
                engine.refresh(dirs)

        value = "none" if cap is None else f"{cap:g} B/s"
        self._apply(change, *(f"bandwidth_{d}={value}" for d in dirs))

    def blackhole(self, *, direction: DirectionArg = "both") -> None:
        """Deliver nothing more, keep every connection open: a partition.

        Bytes are neither delivered nor lost: the proxy stops reading, so
        they wait in the senders' buffers, as unacknowledged TCP segments do
        while a real partition drops packets. Clients time out by their own
        socket timeouts; new connections are accepted but carry nothing.
        :meth:`heal` lets the waiting bytes through, in order (a stream with
        a hole in it is something no real network produces).
        """
        dirs = _directions(direction)

        def change(engine: Engine | None) -> None:
            for d in dirs:
                self._net.knobs[d].held = True
            if engine:
                engine.refresh(dirs)

        self._apply(change, *(f"blackhole_{d}=on" for d in dirs))

    def refuse(self) -> None:
        """Reset each new connection as soon as it is accepted (until heal).

        Open connections keep working. A client sees "connection reset by
        peer" on its first command, as from a host whose server is down.
        """

        def change(engine: Engine | None) -> None:
            self._net.refusing = True

        self._apply(change, "refuse=on")

    def reset(self) -> int:
        """Reset (TCP RST) every open connection, both sides, now.

        Returns:
            How many connections were reset. The knobs are unchanged: new
            connections are accepted as before.
        """
        count: int = self._apply(lambda e: e.reset_all() if e else 0, "reset=now")
        return count

    def heal(self) -> None:
        """Back to a perfect network: no latency, no cap, no hole, no refusal.

        Bytes held by a black hole flow on, in order; nothing is restarted.
        """

        def change(engine: Engine | None) -> None:
            for knobs in self._net.knobs.values():
                knobs.clear()
            self._net.refusing = False
            if engine:
                engine.refresh()

        self._apply(change, "heal=all")

    # --- using it ---------------------------------------------------------
    def client(self, **kwargs: Any) -> redis.Redis:
        """A ``redis.Redis`` that connects through this proxy.

        ``decode_responses=True`` and ``password`` (from :meth:`to`) by
        default. Fault experiments want ``socket_timeout=`` and
        ``retry=labkit.server.no_retry()``: redis-py retries with backoff.
        """
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("password", self.password)
        return redis.Redis(host=self.host, port=self.port, **kwargs)
