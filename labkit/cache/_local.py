"""Server-assisted client-side caching: local reads, invalidated by the server."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from labkit.cache._base import MAX_ENTRIES, CacheStats, wrong_type
from labkit.core.args import Key, check_count, check_key, check_seconds
from labkit.core.clients import check_client, connection_settings
from labkit.core.listen import Listener, ListenerStats, as_text
from labkit.core.wait import wait_until
from labkit.errors import TrackingError

__all__ = ["ClientSideCache", "TrackingStats"]

#: Where the server publishes invalidations for a redirected RESP2 connection.
INVALIDATE_CHANNEL = "__redis__:invalidate"

_NET_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
_MISSING = object()
_monotonic = time.monotonic


@dataclass
class TrackingStats:
    """What the tracking connection has been through.

    Attributes:
        invalidations: Local copies dropped by the server's invalidations.
        flushes: Times the whole local copy was dropped: a ``FLUSHDB`` or
            ``FLUSHALL``, or a reconnect (invalidations may have been missed).
        rearms: Times tracking was switched on again after a reconnect.
        disconnects: Times the tracking or the invalidation connection was
            found broken.
        downtime: Seconds spent without tracking, summed over ended outages.
        down_since: ``time.monotonic()`` when the current outage began, or
            None while tracking is armed.
        last_error: The latest error met on either connection.
    """

    invalidations: int = 0
    flushes: int = 0
    rearms: int = 0
    disconnects: int = 0
    downtime: float = 0.0
    down_since: float | None = None
    last_error: BaseException | None = field(default=None, repr=False)


def _register_connect_callback(conn: Any, callback: Callable[[Any], None]) -> None:
    """Have redis-py call ``callback(conn)`` after every (re)connect of ``conn``.

    ``Connection.register_connect_callback`` is public but little documented
    (redis-py's PubSub re-subscribes through it). It keeps a weak reference to
    the bound method and calls it after the connection's handshake. Checked
    against redis-py 8.1.0; ``tests/test_cache_local.py`` fails loudly if a
    reconnect stops calling it.
    """
    conn.register_connect_callback(callback)


class ClientSideCache:
    """A process-local copy of ``GET`` replies, kept fresh by ``CLIENT TRACKING``.

    Two connections of its own: one reads (``GET``) with tracking on, so the
    server remembers which keys it read; the other is subscribed to
    ``__redis__:invalidate``, where the server publishes (``REDIRECT``) the
    keys another client changed. A background thread (the labkit
    :class:`~labkit.core.listen.Listener`) drops those keys from the local
    copy. A local hit is a dict lookup and a count: no round trip, no lock, no
    clock, no socket check (a second thread makes that check).

    Lifecycle: the constructor only checks its arguments; :meth:`start`
    connects, switches tracking on and starts both threads, :meth:`close`
    stops them. Use it as a context manager (``with ClientSideCache(r) as
    local:``), or call ``start()`` and ``close()``; a read before ``start()``
    raises :class:`~labkit.errors.TrackingError` saying so.

    The price is a short stale window: a write's invalidation reaches this
    process after the write's reply reaches the writer, so a local read just
    after another client's write can still return the old value.
    :meth:`wait_invalidated` waits for one key's invalidation.

    Faults: when either connection breaks (a ``CLIENT KILL``, a restart), the
    local copy is dropped, since invalidations may have been missed; tracking
    is switched on again when the connections are back (``stats`` says when
    and for how long it was down). A broken reading connection is noticed at
    the next miss, or by a non-blocking check every ``check_interval``
    seconds while anything is held locally (in a thread of its own, so that
    hits need not look at a clock); a silent server (SIGSTOP) by the
    listener's PING within ``timeout``. Every call to the server is bounded
    by ``timeout``.

    Works on RESP2 and RESP3 clients alike (RESP2 connections are used), on
    Redis/Valkey 7.0+. redis-py 8 has client-side caching built in
    (``protocol=3, cache_config=CacheConfig()``) but accepts only servers
    whose HELLO says ``redis`` >= 7.4, which excludes Valkey.

    Args:
        client: A ``redis.Redis``; its connection settings are copied for the
            two connections (its own pool is not used).
        max_entries: Local entries kept, the oldest fetched dropped first
            (1 to 10,000,000). A hit does not reorder them: that would cost
            every hit a write; an evicted hot key costs one miss.
        timeout: Seconds any call to the server may take, and after which a
            silent server is declared down (0.01 to 60).
        check_interval: Seconds between two non-blocking checks that the
            reading connection is still open (0.001 to 60).

    Keys: none written; it reads the caller's keys with ``GET``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_entries: int = 10_000,
        timeout: float = 5.0,
        check_interval: float = 0.05,
    ) -> None:
        check_client(
            client,
            owner="ClientSideCache",
            cluster="tracking belongs to one connection, and a cluster client "
            "reads through one connection per node",
        )
        self.max_entries = check_count("max_entries", max_entries, max=MAX_ENTRIES)
        self.timeout = check_seconds(
            "timeout", timeout, min=0.01, max=60, min_open=False
        )
        self.check_interval = check_seconds(
            "check_interval", check_interval, min=0.001, max=60, min_open=False
        )
        self.stats = CacheStats()
        self.tracking = TrackingStats()
        # Insertion order is fetch order: the first key is the oldest fetched.
        self._local: dict[str, Any] = {}
        # Held by every path that talks to the reading connection; the connect
        # callback runs inside those paths (or start()) and takes none.
        self._lock = threading.Lock()
        self._armed = self._armed_once = False
        self._subscribed = False
        self._listener_downtime = 0.0
        self._next_check = 0.0
        self._state = "new"  # then "started", then "closed"
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        name = f"labkit-csc-{secrets.token_hex(4)}"
        self.name = name
        common = {
            "protocol": 2,  # invalidations as pub/sub messages, on any server
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),  # reconnects are ours to handle
        }
        cls = client.connection_pool.connection_class
        # Pools and clients connect lazily: nothing here does I/O.
        self._listen_pool = redis.ConnectionPool(
            connection_class=cls,
            **connection_settings(
                client, **common, client_name=f"{name}-invalidations"
            ),
        )
        self._data_pool = redis.ConnectionPool(
            connection_class=cls,
            max_connections=1,
            **connection_settings(client, **common, client_name=f"{name}-reads"),
        )
        self._listener = Listener(
            redis.Redis(connection_pool=self._listen_pool),
            [INVALIDATE_CHANNEL],
            on_message=self._on_invalidate,
            on_subscribe=self._on_subscribe,
            health_check_interval=max(0.01, self.timeout / 3),
            dead_after=self.timeout,
            name=f"ClientSideCache({name})",
        )
        self._conn: Any = None  # a redis-py Connection (untyped there)

    def start(self) -> ClientSideCache:
        """Connect, switch tracking on, start the listener and checker threads.

        Returns ``self``; a second call does nothing. ``with`` calls it.

        Raises:
            redis.ConnectionError, redis.TimeoutError: The server could not be
                reached within ``timeout``.
            TrackingError: Tracking could not be switched on, or the cache
                was closed (a closed cache does not start again: make a new
                one).
        """
        if self._state == "started":
            return self
        if self._state == "closed":
            raise self._closed()
        try:
            self._conn = self._data_pool.get_connection()
            _register_connect_callback(self._conn, self._on_connect)
            self._listener.start(timeout=self.timeout)  # arms tracking
            if not self._armed:
                error = self.tracking.last_error
                raise TrackingError(
                    f"ClientSideCache could not switch CLIENT TRACKING on at "
                    f"{self.server}: {error}",
                    server=self.server,
                    reason=str(error),
                )
            self._watcher = threading.Thread(
                target=self._watch, name=f"ClientSideCache({self.name}) checks",
                daemon=True,
            )  # fmt: skip
            self._watcher.start()
        except BaseException:
            self.close()
            raise
        self._state = "started"
        return self

    @property
    def server(self) -> str:
        """``host:port`` (or socket path) of the server."""
        kw = self._data_pool.connection_kwargs
        return kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"

    @property
    def listener_stats(self) -> ListenerStats:
        """The invalidation listener's own counters (reconnects, errors...)."""
        return self._listener.stats

    @property
    def invalidations(self) -> int:
        """Local copies dropped by invalidations (``tracking.invalidations``)."""
        return self.tracking.invalidations

    def __repr__(self) -> str:
        state = "armed" if self._armed else "not tracking"
        if self._state != "started":
            state = "not started" if self._state == "new" else "closed"
        return f"<ClientSideCache {self.server} {state}, {len(self._local)} entries>"

    # --- tracking state ---------------------------------------------------
    def _listener_id(self, conn: Any) -> int | None:
        """The server's id of our invalidation connection, from ``CLIENT LIST``."""
        conn.send_command("CLIENT", "LIST", "TYPE", "pubsub")
        wanted = f"name={self.name}-invalidations"
        ids = [
            int(line.split(" ", 1)[0].removeprefix("id="))
            for line in as_text(conn.read_response()).splitlines()
            if wanted in line.split(" ")
        ]
        return max(ids) if ids else None  # the newest, if an old one lingers

    def _arm(self, conn: Any) -> None:
        """Switch tracking on ``conn``, redirected to the listener; drop the copy."""
        self._drop_all()
        self._armed = False
        try:
            target = self._listener_id(conn)
            if target is None:
                self.tracking.last_error = TrackingError(
                    "the invalidation connection is not subscribed",
                    server=self.server,
                    reason="no listener",
                )
                return
            conn.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", target)
            conn.read_response()
        except redis.ResponseError as exc:
            self.tracking.last_error = exc  # e.g. the target left meanwhile
            return
        self._armed = True
        if self._armed_once:
            self.tracking.rearms += 1
        self._armed_once = True
        down = self.tracking.down_since
        if down is not None:
            self.tracking.downtime += time.monotonic() - down
            self.tracking.down_since = None

    def _on_connect(self, conn: Any) -> None:
        # redis-py calls this inside connect(): a new connection has no
        # tracking. Only code holding self._lock (or start()) uses
        # the connection, so the lock is held already. Errors stay here, so
        # a failed arm never fails the connect.
        try:
            self._arm(conn)
        except _NET_ERRORS as exc:
            self.tracking.last_error = exc

    def _on_subscribe(self, channel: str) -> None:
        # The listener (re)subscribed, maybe on a new connection with a new id:
        # redirect to it. Invalidations sent meanwhile are lost: _arm drops all.
        with self._lock:
            if self._conn is None:
                return
            renewal, self._subscribed = self._subscribed, True
            if renewal:  # the listener reconnected: count its outage as ours
                self.tracking.disconnects += 1
                listened = self._listener.stats.downtime
                self.tracking.downtime += listened - self._listener_downtime
                self._listener_downtime = listened
                self.tracking.down_since = self.tracking.down_since or time.monotonic()
            try:
                self._arm(self._conn)
            except _NET_ERRORS as exc:
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        """Count a broken connection; the local copy cannot be trusted any more."""
        self.tracking.disconnects += 1
        self.tracking.last_error = exc
        if self.tracking.down_since is None:
            self.tracking.down_since = time.monotonic()
        self._armed = False
        self._drop_all()
        if self._conn is not None:
            self._conn.disconnect()

    def _drop_all(self) -> None:
        if self._local:
            self.tracking.flushes += 1
            self._local.clear()

    def _closed(self) -> TrackingError:
        if self._state == "new":
            return TrackingError(
                "ClientSideCache is not started: call start() first, or use it "
                "as a context manager (with ClientSideCache(client) as local: ...)",
                server=self.server,
                reason="not started",
            )
        return TrackingError(
            "ClientSideCache is closed", server=self.server, reason="closed"
        )

    def _watch(self) -> None:
        """The checker thread: :meth:`_check` every ``check_interval`` while
        anything is held locally (with nothing held, the next miss checks)."""
        while not self._stop.wait(self.check_interval):
            if not self._local:
                continue
            with self._lock:
                if self._conn is None:
                    return
                try:
                    self._check()
                except Exception as exc:  # never let the thread die silently
                    self.tracking.last_error = exc

    def _check(self) -> None:
        """Every ``check_interval``: is the reading connection still open?"""
        if self._conn is None:
            raise self._closed()
        self._next_check = time.monotonic() + self.check_interval
        if self._listener.stats.down_since is not None:
            if self._armed or self._local:
                self._armed = False
                self._drop_all()
                if self.tracking.down_since is None:
                    self.tracking.down_since = self._listener.stats.down_since
            return
        try:
            # Nothing ever arrives unasked on this connection (invalidations
            # go to the listener): readable means closed, or out of step.
            if self._conn.can_read(timeout=0):
                raise redis.ConnectionError(
                    "unexpected data on the tracking connection"
                )
            if not self._armed:
                self._arm(self._conn)
        except _NET_ERRORS as exc:
            self._lost(exc)

    def _on_invalidate(self, message: dict[str, Any]) -> None:
        keys = message["data"]
        with self._lock:
            if keys is None:  # FLUSHDB / FLUSHALL: everything is stale
                self._drop_all()
                return
            for key in keys if isinstance(keys, list) else [keys]:
                if self._local.pop(as_text(key), None) is not None:
                    self.tracking.invalidations += 1

    # --- reading ----------------------------------------------------------
    def get(self, key: Key) -> Any:
        """``GET key``, answered locally when the server has not invalidated it.

        A local hit is one dict lookup and a count: no lock (the listener
        thread's removals are atomic dict operations), no clock. Its count in
        ``stats.hits`` can miss an increment when several threads read at
        once.

        Raises:
            TypeError, ValueError: ``key`` is not a non-empty str (or int).
            redis.ConnectionError, redis.TimeoutError: The server could not be
                reached within ``timeout`` (twice: one reconnect is tried).
            WrongTypeError: The key holds another type than a string.
            TrackingError: Not started yet, or closed.
        """
        # The hit path bench_instructions.py holds to 100x fewer instructions
        # than a GET. Only str keys are stored: anything else (an int, a bad
        # key, even an unhashable one) misses here and is checked in _miss.
        try:
            value = self._local[key]  # type: ignore[index]
        except (KeyError, TypeError):
            return self._miss(key)
        self.stats.hits += 1
        return value

    def _miss(self, key: Key) -> Any:
        key = check_key("key", key)
        with self._lock:
            if self._conn is None:
                raise self._closed()
            if _monotonic() >= self._next_check:
                self._check()
            value = self._local.get(key, _MISSING)
            if value is not _MISSING:  # an int key, or fetched meanwhile
                self.stats.hits += 1
                return value
            return self._fetch(key)

    def _fetch(self, key: str) -> Any:
        if self._conn is None:
            raise self._closed()
        for attempt in (1, 2):
            try:
                self._conn.send_command("GET", key)
                value = self._conn.read_response()
                break
            except redis.ResponseError as exc:
                if "WRONGTYPE" not in str(exc):
                    raise
                self._conn.send_command("TYPE", key)
                found = as_text(self._conn.read_response())
                raise wrong_type(key, expected="string", found=found) from exc
            except redis.ConnectionError as exc:
                self._lost(exc)  # the next send reconnects, and re-arms
                if attempt == 2:
                    raise
            except redis.TimeoutError as exc:
                self._lost(exc)  # not retried: that would double the wait
                raise
        # Holding the lock, the listener cannot apply an invalidation of this
        # key before the value is stored: it is applied after, and drops it.
        if value is not None and self._armed:
            local = self._local
            local[key] = value
            if len(local) > self.max_entries:  # drop the oldest fetched
                local.pop(next(iter(local)), None)
        self.stats.misses += 1
        return value

    def wait_invalidated(self, key: Key, timeout: float = 1.0) -> bool:
        """Wait (at most ``timeout`` s) until ``key`` is no longer held locally.

        The server sends an invalidation after another client's write; it is
        not part of that write's reply, so a read right after the write can
        still see the old copy. Call this after a write to be sure its
        invalidation has been applied.

        Returns:
            True once the local copy is gone, False if it was still there at
            the timeout.
        """
        key = check_key("key", key)
        return wait_until(lambda: key not in self, timeout, interval=0.001)

    def __len__(self) -> int:
        with self._lock:
            return len(self._local)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._local

    @property
    def armed(self) -> bool:
        """True while tracking is on and the local copy can be served."""
        return self._armed

    def close(self) -> None:
        """Stop both threads, drop the local copy, close both connections.

        Idempotent; a closed cache does not start again.
        """
        self._state = "closed"
        self._stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(self.timeout + 5)
        self._listener.stop()
        with self._lock:
            self._local.clear()
            self._armed = False
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()  # tracking ends with the connection
        self._data_pool.disconnect()
        self._listen_pool.disconnect()

    def __enter__(self) -> ClientSideCache:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
