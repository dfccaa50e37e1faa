"""Library: one connection per server, to send a call to all of them at once."""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from labkit.core.clients import connection_settings
from labkit.core.scripts import Arg, Script

__all__ = ["Multiplexed"]

_PENDING = object()


class _Wire:
    """Lets ``Script.queue`` write its command onto one raw connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute_command(self, *args: Any) -> None:
        self.connection.send_command(*args)


#: redis-py 8 reads a reply with a timeout of its own; 7.x reads with the
#: socket's timeout, set when the connection was made.
_READ_TAKES_TIMEOUT = "timeout" in inspect.signature(
    AbstractConnection.read_response
).parameters


def read_reply(conn: Any, timeout: float) -> Any:
    """Read one reply from ``conn``, waiting at most ``timeout`` for it to start.

    redis-py >= 8: ``read_response(timeout=)``. redis-py 7.x has no such
    argument: wait with ``can_read(timeout)``, then read (the rest of a reply
    that has started is bounded by the socket timeout the connection was made
    with, see :meth:`Multiplexed._connection`).

    Raises:
        redis.TimeoutError: No reply began within ``timeout`` (the connection
            is closed: the reply may still arrive later).
    """
    if _READ_TAKES_TIMEOUT:
        return conn.read_response(timeout=timeout)
    if not conn.can_read(timeout=timeout):
        conn.disconnect()
        raise redis.TimeoutError(
            f"no reply from {conn.host}:{conn.port} within {timeout:.3f} s"
        )
    return conn.read_response()


class Multiplexed:
    """One connection per server, to send a call to all of them at once.

    :meth:`call` writes the command to every server first, then reads the
    answers, all within ``timeout`` seconds: N servers cost about one round
    trip, and a down or frozen server costs at most ``timeout``, connecting
    included. Redlock asks for exactly this: a per-server timeout "small
    compared to the lease", and ideally multiplexing.

    The connections are made from each client's pool settings (host, port,
    password, TLS...), with no retries and socket timeouts set to what is
    left of ``timeout``, so the client's own retry policy or missing
    ``socket_timeout`` cannot stretch a call. They belong to this object (one
    holder, one thread); :meth:`close` closes them.

    redis-py has no public call that sends to several servers before reading,
    so this uses its connection-level API: ``ConnectionPool.connection_class``
    and ``connection_kwargs``, ``Connection.send_command`` and
    ``Connection.read_response`` (through :func:`read_reply`), checked
    against redis-py 7.4.1, 8.1.0 and 8.2.0 (``tests/test_locks.py`` checks
    they are still there).
    """

    def __init__(self, clients: Sequence[redis.Redis], timeout: float) -> None:
        self.clients = list(clients)
        self.timeout = timeout
        self._conns: list[Any] = [None] * len(self.clients)

    def _connection(self, i: int, left: float) -> Any:
        conn = self._conns[i]
        if conn is None:
            pool = self.clients[i].connection_pool
            kwargs = connection_settings(
                self.clients[i], retry=Retry(NoBackoff(), 0)
            )
            conn = self._conns[i] = pool.connection_class(**kwargs)
        # Used when (re)connecting: the TCP connect and the AUTH/HELLO reply.
        conn.socket_timeout = conn.socket_connect_timeout = left
        try:
            # Data or EOF waiting on an idle connection: the server restarted,
            # or an old answer arrived late. Start afresh (as redis-py's pool
            # does before lending a connection).
            if conn.can_read(timeout=0):
                conn.disconnect()
        except (redis.ConnectionError, OSError):
            conn.disconnect()
        return conn

    def call(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg]
    ) -> list[Any]:
        """Run one script call on every server; each answer, or its error.

        Returns:
            One entry per server: the reply, or the exception
            (``ConnectionError``, ``TimeoutError``, ``ResponseError``) its
            call ended with. A connection whose answer did not come in time is
            closed, since the answer may still arrive later.
        """
        deadline = time.monotonic() + self.timeout
        results: list[Any] = [_PENDING] * len(self.clients)
        for i in range(len(self.clients)):
            left = max(0.001, deadline - time.monotonic())
            try:
                script.queue(_Wire(self._connection(i, left)), keys, args)
            except redis.RedisError as exc:
                self._conns[i].disconnect()
                results[i] = exc
        for i, conn in enumerate(self._conns):
            if results[i] is not _PENDING:
                continue
            # An answer already here is read even if the deadline has passed.
            left = max(0.001, deadline - time.monotonic())
            try:
                results[i] = read_reply(conn, left)
            except redis.RedisError as exc:
                results[i] = exc  # read_response closed the connection
        for i, reply in enumerate(results):
            if isinstance(reply, redis.exceptions.NoScriptError):
                # A restarted server forgot the script: load it, the usual way.
                try:
                    results[i] = script(self.clients[i], keys, args)
                except redis.RedisError as exc:
                    results[i] = exc
        return results

    def close(self) -> None:
        """Close the connections (a later call opens them again)."""
        for conn in self._conns:
            if conn is not None:
                conn.disconnect()
