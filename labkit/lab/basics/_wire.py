"""RESP on a bare socket: :class:`Wire` and :func:`parse_replies`."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self

import redis

from labkit.core.args import check_count, check_name, check_seconds
from labkit.lab.errors import WireError

__all__ = ["Exchange", "Wire", "parse_replies"]

_INCOMPLETE = object()


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
        kw = _tcp_kwargs(client)
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
            WireError: The wire is closed, the connection failed, or the
                replies did not come within ``timeout`` seconds. The wire is
                closed after any failure (a late reply would otherwise be
                read as the answer to the next command).
        """
        if not isinstance(payload, bytes | bytearray) or not payload:
            raise TypeError(f"payload={payload!r}: must be non-empty bytes")
        check_count("replies", replies, max=1_000_000)
        if self._sock.fileno() < 0:
            raise WireError(f"{self.address}: the wire is closed", address=self.address)
        deadline = time.monotonic() + self.timeout
        received = self._buffer
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(payload)
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
                    raise ConnectionResetError("the server closed the connection")
                received += chunk
        except TimeoutError as exc:
            self.close()
            raise WireError(
                f"{self.address}: no {replies} replies within {self.timeout:g} s; "
                "the wire is closed",
                address=self.address,
            ) from exc
        except OSError as exc:
            self.close()
            raise WireError(
                f"{self.address}: connection failed after {len(received)} bytes "
                f"received ({exc}); the wire is closed",
                address=self.address,
            ) from exc
        self._buffer = received[used:]  # replies nobody waited for yet: next send's
        return Exchange(bytes(payload), received[:used], parsed)

    def send_bytes(self, payload: bytes, size: int) -> bytes:
        """Write ``payload`` in one go and read ``size`` bytes back, unparsed.

        For timing the trip and the server alone: the caller knows how many
        bytes the replies take (e.g. ``b"$1\\r\\nv\\r\\n" * n`` for ``n`` GETs
        of a one-byte value), so no client-side parsing is timed.

        Raises:
            TypeError, ValueError: as :meth:`send`, or ``size`` is not a count.
            WireError: as :meth:`send`; also when more than ``size`` bytes came
                (the caller's byte count was wrong).
        """
        if not isinstance(payload, bytes | bytearray) or not payload:
            raise TypeError(f"payload={payload!r}: must be non-empty bytes")
        check_count("size", size, max=1 << 30)
        if self._sock.fileno() < 0:
            raise WireError(f"{self.address}: the wire is closed", address=self.address)
        if self._buffer:
            raise WireError(
                f"{self.address}: replies of an earlier send are still unread",
                address=self.address,
            )
        chunks, got = [], 0
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(payload)
            while got < size:
                chunk = self._sock.recv(max(65536, size - got))
                if not chunk:
                    raise ConnectionResetError("the server closed the connection")
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError as exc:
            self.close()
            raise WireError(
                f"{self.address}: {got} of {size} bytes within {self.timeout:g} s; "
                "the wire is closed",
                address=self.address,
            ) from exc
        except OSError as exc:
            self.close()
            raise WireError(
                f"{self.address}: connection failed after {got} of {size} bytes "
                f"({exc}); the wire is closed",
                address=self.address,
            ) from exc
        if got > size:
            self.close()
            raise WireError(
                f"{self.address}: {got} bytes came, {size} expected; "
                "the wire is closed",
                address=self.address,
            )
        return b"".join(chunks)

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


def _tcp_kwargs(client: redis.Redis) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    if not isinstance(client, redis.Redis) or pool is None:
        raise TypeError(f"client={client!r}: expected a redis.Redis")
    kw = dict(pool.connection_kwargs)
    if "host" not in kw or issubclass(pool.connection_class, redis.SSLConnection):
        raise ValueError(
            f"client={client!r}: Wire and the proxy need plain TCP; this client uses a "
            "unix socket or TLS (point REDIS_URL at a redis:// server)"
        )
    return kw
