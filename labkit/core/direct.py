"""A script call on a hot path: ``EVALSHA`` packed once, sent on a pooled connection.

``client.execute_command`` spends most of a call's client instructions on
what a hot path does not need: packing the same SHA and keys again, building
a retry closure, recording observability events, looking up a response
callback. :class:`Direct` packs the fixed head of a call (``EVALSHA``, SHA,
key count, keys) once, then per call packs only its arguments, takes a
connection from the client's pool, sends, reads and gives it back.

What stays as with ``execute_command``: the pool (its limits, fork safety,
health checks), the client's parser and ``decode_responses``, the socket
timeouts, errors raised as redis-py raises them (a connection error or timeout
drops the connection). What differs: a connection error or timeout is not
retried (for a lock or a queue script that is the safe reply anyway: a retried
call may run twice). A ``NOSCRIPT`` reply loads the script and sends the call
again, as :class:`~labkit.core.scripts.Script` does.

A ``RedisCluster``, a single-connection client or a pool of another kind
(Sentinel's) goes through :class:`~labkit.core.scripts.Script` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError

from labkit.core.scripts import FAULTS, Arg, Script, name_fault

__all__ = ["Direct", "run"]

_POOLS = (redis.ConnectionPool, redis.BlockingConnectionPool)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _pack(parts: list[bytes], args: Sequence[Arg]) -> bytes:
    for value in args:
        data = (
            value.encode("utf-8")
            if type(value) is str
            else (value if type(value) is bytes else str(value).encode("ascii"))
        )
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def run(
    script: Script,
    client: redis.Redis | redis.RedisCluster,
    keys: Sequence[str],
    args: Sequence[Arg],
) -> Any:
    """One call of ``script`` with any number of keys and args, packed here
    (for a call whose keys change every time, such as a batch)."""
    return Direct(script, client, (), len(keys) + len(args), more_keys=len(keys))(
        *keys, *args
    )


class Direct:
    """Calls of ``script`` with fixed ``keys`` through ``client``.

    Args:
        script: The script.
        client: A ``redis.Redis`` or ``RedisCluster``.
        keys: The keys of every call.
        nargs: How many arguments each call passes.
        more_keys: How many of those arguments are more keys (the first ones:
            they follow ``keys``).
    """

    __slots__ = ("_head", "_keys", "_more", "_nargs", "client", "pool", "script")

    def __init__(
        self,
        script: Script,
        client: redis.Redis | redis.RedisCluster,
        keys: Sequence[str],
        nargs: int,
        *,
        more_keys: int = 0,
    ) -> None:
        self.script = script
        self.client = client
        self._keys = list(keys)
        self._more = more_keys
        self._nargs = nargs
        pool = getattr(client, "connection_pool", None)
        single = getattr(client, "connection", None) is not None
        self.pool = (
            pool
            if isinstance(client, redis.Redis) and type(pool) in _POOLS and not single
            else None
        )
        head: list[Arg] = ["EVALSHA", script.sha, len(keys) + more_keys, *self._keys]
        self._head = b"*%d\r\n" % (3 + len(keys) + nargs) + b"".join(
            _bulk(self._encode(part)) for part in head
        )

    def _encode(self, value: Arg) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        return str(value).encode("ascii")

    def __call__(self, *args: Arg) -> Any:
        """Run the script with ``args`` (str, bytes or int); its reply."""
        if len(args) != self._nargs:  # the head announced nargs: never send others
            raise TypeError(
                f"{self.script.name}: {len(args)} arguments, want {self._nargs}"
            )
        pool = self.pool
        if pool is None:
            return self._slow(args)
        packed = _pack([self._head], args)
        conn = pool.get_connection()
        try:
            conn.send_packed_command((packed,))
            return conn.read_response()
        except NoScriptError:
            pass  # the server restarted, flushed or failed over: load, send again
        except FAULTS as exc:
            keys = [*self._keys, *args[: self._more]]
            what = f"script {self.script.name}, keys {keys!r:.200}"
            raise name_fault(exc, self.client, what) from exc
        finally:
            pool.release(conn)
        return self._slow(args)

    def _slow(self, args: Sequence[Arg]) -> Any:
        """Through :class:`~labkit.core.scripts.Script` (loads it if needed)."""
        more = self._more
        keys = [*self._keys, *(str(k) for k in args[:more])]
        return self.script(self.client, keys, args[more:])
