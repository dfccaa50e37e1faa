"""Lab: notebook 00's experiments: RESP on a bare socket, round trips, races.

- :class:`Wire` sends bytes the caller wrote by hand over a plain TCP socket
  and returns the bytes that came back, so a learner sees what a command, a
  pipeline and a transaction are on the wire.
- :func:`proxy_for` and :func:`client_via` put a :class:`~labkit.lab.proxy.Proxy`
  between a client and its server (to inject round trips);
  :func:`median_ping_ms` measures the round trip actually obtained, and
  :func:`pipeline_curves` times a pipelining function at several batch sizes
  on several clients, interleaved so that load from elsewhere hits every
  curve alike.
- :func:`in_threads` runs one function in several threads at once (a race);
  :func:`server_usec_per_call` reads the server's own time per command from
  ``INFO commandstats``; :func:`sample` records a value over time.

Nothing here hides a lesson: the commands being taught are written in the
notebook and passed in as functions or bytes; these helpers run the loops.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import redis

from labkit.core.args import check_callable, check_count, check_name, check_seconds
from labkit.errors import WireError
from labkit.lab.proxy import Proxy

__all__ = [
    "Exchange",
    "Wire",
    "client_via",
    "in_threads",
    "median_ping_ms",
    "parse_replies",
    "pipeline_curves",
    "proxy_for",
    "sample",
    "server_usec_per_call",
]

C = TypeVar("C")
_INCOMPLETE = object()


# --- RESP on a plain socket ---------------------------------------------------
def _parse_one(data: bytes, at: int) -> tuple[Any, int]:
    """One RESP2 value starting at ``data[at]``; ``(_INCOMPLETE, at)`` if cut."""
    end = data.find(b"\r\n", at)
    if end < 0:
        return _INCOMPLETE, at
    kind, line = data[at : at + 1], data[at + 1 : end]
    after = end + 2
    if kind == b"+":
        return line.decode(), after
    if kind == b"-":
        return redis.ResponseError(line.decode()), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(data) < after + size + 2:
            return _INCOMPLETE, at
        return data[after : after + size].decode(errors="backslashreplace"), (
            after + size + 2
        )
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _parse_one(data, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, at
            items.append(item)
        return items, after
    raise ValueError(f"not a RESP2 reply at byte {at}: {data[at : at + 20]!r}")


def parse_replies(data: bytes, limit: int | None = None) -> tuple[list[Any], int]:
    """The complete RESP2 replies at the start of ``data``, and bytes they used.

    Simple strings and bulk strings become ``str``, integers ``int``, a nil
    ``None``, arrays lists, and an error a ``redis.ResponseError`` (returned,
    not raised). A reply cut short is left for the next call, and so is
    everything after the first ``limit`` replies.

    Raises:
        ValueError: ``data`` is not RESP2.
    """
    replies: list[Any] = []
    at = 0
    while at < len(data) and (limit is None or len(replies) < limit):
        value, after = _parse_one(data, at)
        if value is _INCOMPLETE:
            break
        replies.append(value)
        at = after
    return replies, at


class Exchange(NamedTuple):
    """One write and what came back.

    Attributes:
        sent: The bytes written (in one ``sendall``).
        received: The bytes read until ``replies`` replies were complete.
        replies: Those replies, parsed (see :func:`parse_replies`).
    """

    sent: bytes
    received: bytes
    replies: list[Any]

    def __str__(self) -> str:
        return (
            f"sent     {len(self.sent):>3} bytes: {self.sent!r}\n"
            f"received {len(self.received):>3} bytes: {self.received!r}"
        )


class Wire:
    """A plain TCP socket to a Redis server: the caller writes the RESP bytes.

    Args:
        host, port: The server (plain TCP; no TLS).
        password, username: Sent with ``AUTH`` on connecting (never shown).
        db: Selected on connecting when not 0.
        timeout: Seconds a :meth:`send` may wait for its replies.

    Example:
        >>> with Wire.to(r) as wire:
        ...     print(wire.send(b"*1\\r\\n$4\\r\\nPING\\r\\n"))
        sent      14 bytes: b'*1\\r\\n$4\\r\\nPING\\r\\n'
        received   7 bytes: b'+PONG\\r\\n'
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        password: str | None = None,
        username: str | None = None,
        db: int = 0,
        timeout: float = 5.0,
    ) -> None:
        check_name("host", host)
        check_count("port", port, max=65535)
        self.timeout = check_seconds("timeout", timeout, max=600)
        self.address = f"{host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as exc:
            raise WireError(
                f"cannot connect to {self.address}: {exc}", address=self.address
            ) from exc
        self._buffer = b""
        try:
            if password is not None:
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                self._hidden(auth, "AUTH failed (password not shown)")
            if db:
                self._hidden(("SELECT", str(db)), f"SELECT {db} failed")
        except BaseException:
            self.close()
            raise

    @classmethod
    def to(cls, client: redis.Redis, *, timeout: float = 5.0) -> Wire:
        """A wire to the server (and database) that ``client`` talks to."""
        pool = getattr(client, "connection_pool", None)
        if not isinstance(client, redis.Redis) or pool is None:
            raise TypeError(f"client={client!r}: expected a redis.Redis")
        kw = pool.connection_kwargs
        if "host" not in kw or issubclass(pool.connection_class, redis.SSLConnection):
            raise ValueError(
                f"client={client!r}: Wire speaks plain TCP; this client uses a "
                "unix socket or TLS"
            )
        return cls(
            kw["host"],
            int(kw.get("port", 6379)),
            password=kw.get("password"),
            username=kw.get("username"),
            db=int(kw.get("db") or 0),
            timeout=timeout,
        )

    def _hidden(self, args: Sequence[str], failure: str) -> None:
        payload = b"".join(
            [f"*{len(args)}\r\n".encode()]
            + [b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args]
        )
        (reply,) = self.send(payload).replies
        if isinstance(reply, redis.ResponseError):
            raise WireError(f"{self.address}: {failure}: {reply}", address=self.address)

    def send(self, payload: bytes, replies: int = 1) -> Exchange:
        """Write ``payload`` in one go and read until ``replies`` replies came.

        Args:
            payload: RESP bytes, one or more commands.
            replies: How many replies to wait for (one per command sent).

        Raises:
            TypeError, ValueError: ``payload`` is not non-empty bytes, or
                ``replies`` is not a count.
            WireError: The server closed the connection, or the replies did
                not come within ``timeout`` seconds.
        """
        if not isinstance(payload, bytes | bytearray) or not payload:
            raise TypeError(f"payload={payload!r}: must be non-empty bytes")
        check_count("replies", replies, max=1_000_000)
        deadline = time.monotonic() + self.timeout
        try:
            self._sock.sendall(payload)
            received = self._buffer
            while True:
                parsed, used = parse_replies(received, replies)
                if len(parsed) == replies:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise WireError(
                        f"{self.address} closed the connection after "
                        f"{len(parsed)} of {replies} replies",
                        address=self.address,
                    )
                received += chunk
        except (TimeoutError, OSError) as exc:
            raise WireError(
                f"{self.address}: no {replies} replies within {self.timeout:g} s "
                f"({exc or 'timed out'})",
                address=self.address,
            ) from exc
        self._buffer = received[used:]  # replies nobody waited for yet: next send's
        return Exchange(bytes(payload), received[:used], parsed)

    def close(self) -> None:
        """Close the socket (closing twice is harmless)."""
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- round trips through the proxy -------------------------------------------
def proxy_for(client: redis.Redis, **kwargs: Any) -> Proxy:
    """A started :class:`Proxy` in front of the server ``client`` talks to.

    ``kwargs`` go to :class:`Proxy` (``seed=``, ``buffer_bytes=``...). Stop it
    with ``proxy.stop()`` (or use it as a context manager).
    """
    kw = _tcp_kwargs(client)
    return Proxy(kw["host"], int(kw.get("port", 6379)), **kwargs).start()


def client_via(client: redis.Redis, proxy: Proxy, **overrides: Any) -> redis.Redis:
    """A client with ``client``'s settings (password, db, timeouts, decoding)
    that connects through ``proxy``; ``overrides`` replace any of them.

    Close it with ``.close()``, which closes its own connection pool too.
    """
    kw = {**_tcp_kwargs(client), "host": proxy.host, "port": proxy.port, **overrides}
    pool = redis.ConnectionPool(connection_class=redis.Connection, **kw)
    return redis.Redis.from_pool(pool)


def _tcp_kwargs(client: redis.Redis) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    if not isinstance(client, redis.Redis) or pool is None:
        raise TypeError(f"client={client!r}: expected a redis.Redis")
    kw = dict(pool.connection_kwargs)
    if "host" not in kw or issubclass(pool.connection_class, redis.SSLConnection):
        raise ValueError(
            f"client={client!r}: the proxy forwards plain TCP; this client uses a "
            "unix socket or TLS (point REDIS_URL at a redis:// server)"
        )
    return kw


def median_ping_ms(client: redis.Redis, n: int = 50) -> float:
    """Median round trip of ``n`` PINGs, in milliseconds (after one untimed)."""
    check_count("n", n, max=1_000_000)
    client.ping()  # connect first: the handshake is not a round trip of interest
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def pipeline_curves(
    run: Callable[[C, int], object],
    clients: Mapping[str, C],
    batch_sizes: Sequence[int],
    *,
    rounds: int = 4,
    calls: int = 5,
    progress: Callable[[list[int]], Iterable[int]] | None = None,
) -> dict[str, dict[int, float]]:
    """Median seconds per command of ``run(client, batch)``, per client and batch.

    Args:
        run: Sends ``batch`` commands with ``client`` (the notebook's own
            pipelining function) and returns when all replies are in.
        clients: ``{label: client}``, e.g. direct and through proxies.
        batch_sizes: Commands per call; include 1 as the baseline. They are
            measured in the order given, smallest first being best: on a busy
            machine a process that has just used the CPU for a large batch
            waits longer to be scheduled after each of its next round trips.
        rounds: For each batch size, the clients take turns ``rounds`` times,
            so a burst of load from elsewhere on the machine hits them alike.
        calls: Consecutive timed calls per turn. A point's figure is the
            median of its ``rounds * calls`` calls.
        progress: Wraps the list of batch sizes, e.g. ``tqdm``.

    Returns:
        ``{label: {batch: median seconds per command}}``.
    """
    check_callable("run", run, signature="run(client, batch)")
    check_count("rounds", rounds, max=100_000)
    check_count("calls", calls, max=100_000)
    sizes = [check_count("batch_sizes item", b, max=1_000_000) for b in batch_sizes]
    if not sizes or not clients:
        raise ValueError("batch_sizes and clients must not be empty")
    samples: dict[str, dict[int, list[float]]] = {
        label: {b: [] for b in sizes} for label in clients
    }
    for client in clients.values():  # connect and warm up, untimed
        run(client, sizes[0])
    for b in progress(sizes) if progress else sizes:
        for _ in range(rounds):
            for label, client in clients.items():
                for _ in range(calls):
                    start = time.perf_counter()
                    run(client, b)
                    samples[label][b].append((time.perf_counter() - start) / b)
    return {
        label: {b: statistics.median(s) for b, s in per_batch.items()}
        for label, per_batch in samples.items()
    }


# --- races, server-side timings, values over time ----------------------------
def in_threads(
    work: Callable[[C], object],
    clients: Sequence[C],
    times: int,
    *,
    timeout: float = 60.0,
) -> list[list[Any]]:
    """Call ``work(client)`` ``times`` times in one thread per client, at once.

    The threads wait at a barrier and start together, so their commands
    interleave as two real clients' would.

    Returns:
        One list per client of what ``work`` returned, in call order.

    Raises:
        TimeoutError: The threads did not finish within ``timeout`` seconds
            (they are told to stop and are daemon threads).
        Exception: The first exception a thread raised, re-raised here.
    """
    check_callable("work", work, signature="work(client)")
    if isinstance(clients, str | bytes) or not isinstance(clients, Sequence):
        raise TypeError(f"clients={clients!r}: must be a list of clients")
    check_count("len(clients)", len(clients), max=64)
    check_count("times", times, max=10_000_000)
    check_seconds("timeout", timeout, max=3600)
    start, stop = threading.Barrier(len(clients)), threading.Event()
    results: list[list[Any]] = [[] for _ in clients]
    errors: list[BaseException] = []

    def loop(i: int, client: C) -> None:
        try:
            start.wait(timeout)
            for _ in range(times):
                if stop.is_set():
                    return
                results[i].append(work(client))
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=loop, args=(i, c), daemon=True, name=f"race-{i}")
        for i, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        stop.set()
        for t in threads:
            t.join(5)
        raise TimeoutError(f"in_threads: not done within timeout={timeout:g} s")
    if errors:
        raise errors[0]
    return results


def server_usec_per_call(
    client: redis.Redis,
    command: str,
    fn: Callable[[], object],
    *,
    calls: int = 20,
    batches: int = 11,
) -> float:
    """The server's own time per ``command``, in µs: median over batches.

    Each batch calls ``fn()`` ``calls`` times and reads ``INFO commandstats``
    before and after; the server's microseconds for ``command`` divided by
    its calls in between is that batch's figure. The median of the batches
    shrugs off a batch in which the server process was descheduled. It counts
    executing the command only: not reading, parsing or writing.

    Raises:
        ValueError: ``fn`` made no ``command`` call (or another client's calls
            were counted: the server's counters are server-wide).
    """
    check_name("command", command)
    check_callable("fn", fn)
    check_count("calls", calls, max=1_000_000)
    check_count("batches", batches, max=10_000)
    field = f"cmdstat_{command.lower()}"

    def read() -> tuple[int, int]:
        stat = client.info("commandstats").get(field, {"calls": 0, "usec": 0})
        return int(stat["calls"]), int(stat["usec"])

    figures = []
    for _ in range(batches):
        calls0, usec0 = read()
        for _ in range(calls):
            fn()
        calls1, usec1 = read()
        if calls1 - calls0 <= 0:
            raise ValueError(f"fn made no {command!r} call (INFO {field} unchanged)")
        figures.append((usec1 - usec0) / (calls1 - calls0))
    return float(statistics.median(figures))


def sample(
    fn: Callable[[], C], *, seconds: float, every: float
) -> tuple[list[float], list[C]]:
    """Call ``fn()`` every ``every`` seconds for ``seconds``: (times, values).

    Times are seconds since the first call.
    """
    check_callable("fn", fn)
    check_seconds("seconds", seconds, max=3600)
    check_seconds("every", every, max=seconds)
    times: list[float] = []
    values: list[C] = []
    start = time.perf_counter()
    while True:
        now = time.perf_counter() - start
        times.append(now)
        values.append(fn())
        if now >= seconds:
            return times, values
        time.sleep(max(0.0, every * len(times) - (time.perf_counter() - start)))
