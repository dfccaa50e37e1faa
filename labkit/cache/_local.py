"""Server-assisted client-side caching: local reads, invalidated by the server."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from labkit.cache._base import CacheStats, check_client, check_key

__all__ = ["ClientSideCache"]


class ClientSideCache:
    """A process-local copy of ``GET`` replies, kept fresh by ``CLIENT TRACKING``.

    The client owns one connection in RESP3 with tracking on: the server
    remembers which keys that connection read and, when any client changes
    one, pushes an ``invalidate`` message on it. Before every local read the
    pending pushes are applied, so a changed value is dropped as soon as its
    push has arrived; until then (a short window in general) the old copy can
    still be served. :meth:`wait_invalidated` waits for one key's push. A
    local hit costs a dict lookup and a poll of the socket; a server hit costs
    a round trip.

    redis-py 8 has this built in (``protocol=3, cache_config=CacheConfig()``)
    but refuses any server whose HELLO does not say ``redis`` >= 7.4, Valkey
    included; this class is the same mechanism on a plain redis-py connection.

    Args:
        client: A ``redis.Redis`` made with ``protocol=3``. One of its pool's
            connections is taken and kept until :meth:`close`.
        max_entries: Local entries kept, least recently used dropped first.

    Keys: none written; it reads the caller's keys with ``GET``.
    """

    def __init__(self, client: Any, *, max_entries: int = 10_000) -> None:
        check_client(client)
        protocol = client.connection_pool.connection_kwargs.get("protocol")
        if str(protocol) != "3":
            raise ValueError(
                f"client protocol={protocol!r}: client-side caching needs RESP3 "
                "push messages; make the client with protocol=3"
            )
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries={max_entries!r}: expected an int >= 1")
        self.max_entries = max_entries
        self.stats = CacheStats()
        self.invalidations = 0
        self._local: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = client.connection_pool
        self._conn = self._pool.get_connection()
        # redis-py's own client-side cache hooks its handler in the same way.
        self._conn._parser.set_invalidation_push_handler(self._on_invalidate)
        self._conn.send_command("CLIENT", "TRACKING", "ON")
        reply = self._conn.read_response()
        if reply not in ("OK", b"OK"):
            raise RuntimeError(f"CLIENT TRACKING ON answered {reply!r}")

    def _on_invalidate(self, message: list[Any]) -> None:
        keys = message[1]
        if keys is None:  # FLUSHDB / FLUSHALL: everything is stale
            self.invalidations += len(self._local)
            self._local.clear()
            return
        for key in keys:
            name = key.decode() if isinstance(key, bytes) else key
            if self._local.pop(name, None) is not None:
                self.invalidations += 1

    def _drain(self) -> None:
        while self._conn.can_read(timeout=0):
            self._conn.read_response(push_request=True)

    def get(self, key: str) -> Any:
        """``GET key``, answered locally when the server has not invalidated it."""
        key = check_key("key", key)
        start = time.perf_counter()
        with self._lock:
            self._drain()
            if key in self._local:
                self._local.move_to_end(key)
                value = self._local[key]
                self.stats.record("hit", time.perf_counter() - start)
                return value
            self._conn.send_command("GET", key)
            value = self._conn.read_response()
            # An invalidation for this key can only arrive after the reply
            # (tracking starts when the server answers), so storing is safe.
            if value is not None:
                self._local[key] = value
                if len(self._local) > self.max_entries:
                    self._local.popitem(last=False)
            self.stats.record("miss", time.perf_counter() - start)
            return value

    def wait_invalidated(self, key: str, timeout: float = 1.0) -> bool:
        """Wait (at most ``timeout`` s) until ``key`` is no longer held locally.

        The server sends an invalidation as a push on this connection after
        another client's write; it is not part of that write's reply, so a
        read right after the write can, in general, still see the old copy.
        Call this after a write to be sure its push has been applied.

        Returns:
            True once the local copy is gone, False if it was still there at
            the timeout.
        """
        key = check_key("key", key)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._drain()
                if key not in self._local:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)

    def __len__(self) -> int:
        with self._lock:
            self._drain()
            return len(self._local)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._drain()
            return key in self._local

    def close(self) -> None:
        """Drop the local copy and give the (untracked, reconnected) connection back."""
        with self._lock:
            self._local.clear()
            self._conn.disconnect()  # tracking ends with the connection
            self._pool.release(self._conn)

    def __enter__(self) -> ClientSideCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
