"""Library: feature flags in Redis, read from a local copy kept fresh by pub/sub.

Reading a flag costs no round trip: every :class:`FlagStore` holds a copy of
the flag set, and a listener thread applies the changes other processes
announce on a channel. A change reaches every process in about one pub/sub
hop; a store whose connection was lost reloads everything once its
subscription is back, since pub/sub does not replay missed messages.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from labkit.core.args import (
    Key,
    check_callable,
    check_key,
    check_name,
    check_number,
    check_seconds,
)
from labkit.core.clients import check_client, client_like
from labkit.core.keys import key_part
from labkit.core.listen import Listener, ListenerStats, Message, as_text
from labkit.core.scripts import Script
from labkit.core.wait import wait_until
from labkit.errors import FlagStoreError, MalformedMessageError

__all__ = ["MAX_DOCUMENT", "PREFIX", "Flag", "FlagStore", "rollout_bucket"]

#: Default key prefix of flag sets: ``<prefix>:<namespace>``.
PREFIX = "labkit:flags"

#: Largest JSON document one flag may hold (bytes): flags are configuration.
MAX_DOCUMENT = 64 * 1024

_CHANGE = Script("flags_change")

OnChange = Callable[[str, "Flag | None"], object]


@dataclass(frozen=True)
class Flag:
    """One feature flag.

    Attributes:
        name: The flag's name (a field of the flag-set hash).
        on: Whether the flag is on at all.
        value: Any JSON value carried with the flag (a limit, a colour...).
        percent: Share of actors, 0-100, for whom an ``on`` flag is enabled.
    """

    name: str
    on: bool
    value: Any = None
    percent: float = 100.0


def rollout_bucket(name: str, actor: str) -> float:
    """A stable number in [0, 100) for (flag, actor): same in every process.

    SHA-1 of ``"<name>:<actor>"``, not Python's ``hash()``, which is salted per
    process. Including the flag name gives each flag its own 10% of actors.
    """
    digest = hashlib.sha1(f"{name}:{actor}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def _decode(name: str, raw: str | bytes | None) -> Flag | None:
    """A flag from its JSON document; None if absent or not a flag document."""
    if raw is None:
        return None
    try:
        doc = json.loads(as_text(raw))
        return Flag(
            name, bool(doc["on"]), doc.get("value"), float(doc.get("percent", 100))
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class FlagStore:
    """A flag set in one Redis hash, mirrored locally in each process.

    Every change is numbered: the write, a version counter's increment and
    the announcement are one script, so each store applies a change only if
    it is newer than what it holds for that flag. A store's own change,
    applied locally as soon as it is written, can therefore never overwrite a
    newer change its listener applied meanwhile, and an old announcement
    arriving late is ignored.

    The constructor only checks its arguments: no I/O, no thread.
    :meth:`start` (or ``with``) checks the keys, starts the listener and waits
    for the first load; :meth:`close` stops it. Reading a store that was never
    started raises a RuntimeError rather than answer from an empty copy.

    The listener (:class:`labkit.core.listen.Listener`) subscribes first and
    then loads the whole set, after the first subscription and after every
    renewal that follows a lost connection: whatever changed while it could
    not hear is in the hash. An exception from ``on_change`` or an unreadable
    announcement is counted in :attr:`stats` and kept as ``last_error``; the
    listener goes on.

    Not for a ``RedisCluster`` (refused in the constructor): see ``_CLUSTER``.

    Args:
        client: A ``redis.Redis``; the listener opens one more connection to
            the same server, with the same options, in a pool of its own (so
            closing ``client`` does not stop it; a Sentinel-managed pool is
            shared instead).
        namespace: Names the flag set; several sets can live side by side.
        on_change: Optional callback ``(name, flag or None)`` (labkit names
            callbacks ``on_<event>``: the event here is a flag's change) run on the
            listener thread when a change reaches the local copy (None:
            deleted), in the order the changes were made; for this store's
            own changes, when their announcement comes back. After a reload
            that found differences, it runs once per flag that differs.
        timeout: Seconds :meth:`start` waits for the subscription and the
            first load.
        health_check_interval: Seconds between the listener's PINGs; a
            silent connection is reopened after three of them.
        prefix: Key prefix of the flag sets (default ``labkit:flags``).

    Raises:
        TypeError, ValueError: An argument is not allowed (checked here,
            before any I/O).

    Channel ``<prefix>:<namespace>:changed`` carries ``"<version> [name,
    document or null]"`` for every change.

    Keys:
        ``<prefix>:<namespace>`` (hash): one field per flag, a JSON document
        {on, value, percent} of at most MAX_DOCUMENT bytes; no TTL (it is
        configuration: one field per flag, removed by delete).
        ``<prefix>:<namespace>:version`` (string): the number of changes
        ever made to the set; no TTL (one integer per flag set).

    Use as a context manager (``with FlagStore(r, "app") as flags:``), or call
    :meth:`start` and then :meth:`close`.
    """

    _CLUSTER = (
        "its changes are announced with PUBLISH and heard on one node's pub/sub "
        "connection; on a cluster that needs sharded pub/sub (SPUBLISH, "
        "SSUBSCRIBE) and both keys in one slot, which FlagStore does not do. A "
        "flag set is a small hash: keep it on one server"
    )

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "default",
        *,
        on_change: OnChange | None = None,
        timeout: float = 10.0,
        health_check_interval: float = 1.0,
        prefix: str = PREFIX,
    ) -> None:
        self.client = check_client(client, owner="FlagStore", cluster=self._CLUSTER)
        self.namespace = check_name("namespace", namespace)
        if on_change is not None:
            check_callable("on_change", on_change, signature="name, flag or None")
        self.on_change = on_change
        self.timeout = check_seconds("timeout", timeout, max=3600)
        self.health_check_interval = check_seconds(
            "health_check_interval", health_check_interval, max=3600
        )
        self.prefix = check_name("prefix", prefix, max_len=200)
        self.key = f"{self.prefix}:{key_part(namespace)}"
        self.version_key = f"{self.key}:version"
        self.channel = f"{self.key}:changed"
        #: Full loads of the flag set so far (the first, then one per renewal).
        self.loads = 0
        self._flags: dict[str, Flag] = {}
        self._versions: dict[str, int] = {}  # newer than _floor, deletes included
        self._floor = 0  # the version of the last load: older changes are in it
        self._seen = 0  # the newest version heard of
        self._own: set[int] = set()  # own changes applied before their echo
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._listener: Listener | None = None  # made by start()
        self._listen_client: redis.Redis | None = None
        self._owns_listen_client = False
        self._closed = False
        self._idle_stats = ListenerStats()  # the stats before start()

    def __repr__(self) -> str:
        if self._listener is None:
            return f"<FlagStore {self.namespace!r}: not started>"
        return f"<FlagStore {self.namespace!r}: {len(self._flags)} flags>"

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> FlagStore:
        """Check the keys, subscribe, load the flag set; return the store.

        Returns once the subscription is active and the first load is in the
        local copy. A second call on a running store does nothing.

        Raises:
            FlagStoreError: The flag set's keys hold something else, or the
                first load failed.
            ListenerError: No subscription within ``timeout``.
            RuntimeError: The store was closed (make a new one).
            redis.ConnectionError: The server cannot be reached.
        """
        if self._closed:
            raise RuntimeError(
                f"FlagStore({self.namespace!r}) was closed; make a new FlagStore"
            )
        if self._listener is not None:
            return self
        self._check_keys()  # a clear error before anything starts
        # The subscription gets a pool of its own: closing the caller's client
        # (which disconnects every connection of its pool, in use or not)
        # must not pull the socket from under the listener's read.
        self._listen_client, self._owns_listen_client = _same_server(self.client)
        self._listener = Listener(
            self._listen_client,
            [self.channel],
            on_message=self._on_message,
            on_subscribe=self._on_subscribe,
            health_check_interval=self.health_check_interval,
            name=f"FlagStore({self.namespace})",
        )
        try:
            self._listener.start(self.timeout)
        except BaseException:
            self.close()
            raise
        if self.loads == 0:
            error = self._listener.stats.last_error
            self.close()
            raise FlagStoreError(
                f"FlagStore({self.namespace!r}): the first load of {self.key} "
                f"failed: {error!r}",
                namespace=self.namespace,
                key=self.key,
            ) from error
        return self

    def close(self) -> None:
        """Stop the listener thread and release its connection (idempotent).

        The local copy stays readable, frozen at its last state.
        """
        self._closed = True
        try:
            if self._listener is not None:
                self._listener.stop()
        finally:
            self._close_listen_client()

    def _close_listen_client(self) -> None:
        if self._owns_listen_client and self._listen_client is not None:
            self._listen_client.close()
            self._owns_listen_client = False

    def __enter__(self) -> FlagStore:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _not_started(self) -> RuntimeError:
        return RuntimeError(
            f"FlagStore({self.namespace!r}) is not started: call start() (or use "
            "it in a with block) before reading flags"
        )

    # -- reading: local, no round trip ------------------------------------
    def get(self, name: str) -> Flag | None:
        """The local copy of flag ``name``, or None if there is no such flag.

        Raises:
            RuntimeError: The store was never started.
        """
        if type(name) is not str or not name:
            check_name("name", name)
        if not self.loads:
            raise self._not_started()
        return self._flags.get(name)

    def is_enabled(
        self, name: str, actor: Key | None = None, default: bool = False
    ) -> bool:
        """True if flag ``name`` is on (for ``actor``, under a percentage rollout).

        Args:
            name: The flag.
            actor: Who is asking (a user id: a non-empty str or an int). Needed
                when the flag's ``percent`` is below 100; without it a
                partial rollout is off.
            default: Returned when the flag does not exist.
        """
        flag = self.get(name)
        if type(default) is not bool:
            raise TypeError(f"default={default!r}: must be True or False")
        if actor is not None and (type(actor) is not str or not actor):
            actor = check_key("actor", actor)
        if flag is None:
            return default
        if not flag.on:
            return False
        if flag.percent >= 100:
            return True
        if actor is None:
            return False
        return rollout_bucket(name, actor) < flag.percent

    def value(self, name: str, default: Any = None) -> Any:
        """The value of flag ``name`` if it exists and is on, else ``default``."""
        flag = self.get(name)
        return flag.value if flag is not None and flag.on else default

    def all(self) -> dict[str, Flag]:
        """A snapshot of every flag, by name."""
        if not self.loads:
            raise self._not_started()
        return dict(self._flags)

    def wait_until(
        self, check: Callable[[FlagStore], object], timeout: float = 5.0
    ) -> bool:
        """Poll the local copy until ``check(self)`` is true; False on timeout.

        For code that must see another process's change before going on
        (tests, demos): changes arrive asynchronously.
        """
        check_callable("check", check, signature="store -> bool")
        return wait_until(lambda: check(self), timeout, interval=0.0001)

    @property
    def stats(self) -> ListenerStats:
        """The listener's counters: reconnects, downtime, callback_errors,
        bad_messages, last_error... (all zero before :meth:`start`)."""
        if self._listener is None:
            return self._idle_stats
        return self._listener.stats

    @property
    def running(self) -> bool:
        """True while the listener thread is alive (from :meth:`start` to
        :meth:`close`)."""
        return self._listener is not None and self._listener.running

    @property
    def connected(self) -> bool:
        """True while the listener is subscribed (changes are being heard)."""
        return self._listener is not None and self._listener.connected

    # -- writing: one round trip, seen by every store ------------------------
    def set(
        self, name: str, on: bool = True, value: Any = None, *, percent: float = 100.0
    ) -> Flag:
        """Create or change flag ``name`` and tell every process.

        The hash write, the version and the announcement are one script, so
        every listener hears of the changes in the order they were made.

        Raises:
            TypeError, ValueError: A bad name, on or percent, or a value that
                is not JSON (NaN included) or is larger than MAX_DOCUMENT.
            FlagStoreError: The flag set's keys hold something else.
        """
        check_name("name", name)
        if type(on) is not bool:
            raise TypeError(f"on={on!r}: must be True or False")
        percent = check_number("percent", percent, min=0, max=100, unit="(a share)")
        try:
            doc = json.dumps(
                {"on": on, "value": value, "percent": percent}, allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"value={value!r}: must be JSON (str, number, bool, None, list, "
                "dict; no NaN or infinity)"
            ) from exc
        if len(doc) > MAX_DOCUMENT:
            raise ValueError(
                f"value={_short(value)}: its JSON is {len(doc)} bytes; a flag holds "
                f"at most {MAX_DOCUMENT} (flags are configuration, not data)"
            )
        version = self._change(name, doc)
        flag = Flag(name, on, value, percent)
        self._apply(version, name, flag, own=True)
        return flag

    def delete(self, name: str) -> None:
        """Remove flag ``name`` everywhere (a missing flag is no error)."""
        check_name("name", name)
        self._apply(self._change(name, None), name, None, own=True)

    def _change(self, name: str, doc: str | None) -> int:
        body = json.dumps([name, doc])
        try:
            return int(
                _CHANGE(
                    self.client,
                    (self.key, self.version_key),
                    (self.channel, name, doc or "", body),
                )
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("BADSTATE"):
                raise self._key_error(str(exc)) from exc
            raise

    # -- the local copy ------------------------------------------------------
    def _apply(self, version: int, name: str, flag: Flag | None, *, own: bool) -> bool:
        """Apply a change unless the copy already holds a newer one for ``name``.

        Own changes (from :meth:`set`, :meth:`delete`) notify when their
        announcement arrives; heard changes notify at once.
        """
        with self._lock:
            newer = version > max(self._floor, self._versions.get(name, 0))
            echo = not own and version in self._own
            if newer:
                if flag is None:
                    self._flags.pop(name, None)
                else:
                    self._flags[name] = flag
                self._versions[name] = version
                self._seen = max(self._seen, version)
                if own:
                    self._own.add(version)
            elif echo:
                self._own.discard(version)
        if (newer and not own) or echo:
            self._notify(name, flag)
        return newer

    def _notify(self, name: str, flag: Flag | None) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(name, flag)
        except Exception as exc:  # the user's callback: count it, keep it, go on
            self.stats.callback_errors += 1
            self.stats.last_error = exc

    def reload(self) -> None:
        """Replace the local copy with the server's flag set (one ``MULTI``).

        Changes newer than the snapshot that already reached the copy are
        kept. If the server's version went backwards (a restart without
        persistence, a flush, a failover to a replica that lagged), the
        snapshot wins outright.
        """
        with self._reload_lock:
            with self._lock:
                seen_before = self._seen
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(self.key)
            pipe.get(self.version_key)
            try:
                raw, version_raw = pipe.execute()
            except redis.ResponseError as exc:
                raise self._key_error(str(exc)) from exc
            try:
                version = int(version_raw or 0)
            except ValueError as exc:
                raise self._key_error(f"version {version_raw!r}") from exc
            snapshot = {
                as_text(k): f for k, v in raw.items() if (f := _decode(as_text(k), v))
            }
            with self._lock:
                if version < seen_before:  # the server forgot: trust the snapshot
                    self._versions.clear()
                    self._own.clear()
                for name, newer in list(self._versions.items()):
                    if newer <= version:
                        del self._versions[name]
                    elif name in self._flags:
                        snapshot[name] = self._flags[name]
                    else:
                        snapshot.pop(name, None)
                old, self._flags = self._flags, snapshot
                self._floor = version
                self._seen = max(version, *self._versions.values(), 0)
                self._own = {v for v in self._own if v > version}
                first = self.loads == 0
                self.loads += 1
        if not first:
            for name in sorted(old.keys() | snapshot.keys()):
                if old.get(name) != snapshot.get(name):
                    self._notify(name, snapshot.get(name))

    def _key_error(self, detail: str) -> FlagStoreError:
        return FlagStoreError(
            f"FlagStore({self.namespace!r}): {self.key} must be a hash of flag "
            f"documents and {self.version_key} an integer ({detail}); nothing was "
            "written. Use another namespace, or delete those keys.",
            namespace=self.namespace,
            key=self.key,
        )

    def _check_keys(self) -> None:
        found = [as_text(self.client.type(k)) for k in (self.key, self.version_key)]
        if found[0] not in ("hash", "none") or found[1] not in ("string", "none"):
            raise self._key_error(f"found a {found[0]} and a {found[1]}")

    # -- the listener's callbacks ----------------------------------------------
    def _on_subscribe(self, channel: str) -> None:
        # The first subscription, or its renewal after a lost connection:
        # changes may have been missed while not subscribed, and the
        # subscription is already active, so none can fall between the two.
        self.reload()

    def _on_message(self, msg: Message) -> None:
        data = as_text(msg["data"])
        try:
            head, _, body = data.partition(" ")
            version = int(head)
            name, raw = json.loads(body)
            if type(name) is not str or not (raw is None or type(raw) is str):
                raise TypeError("want [name, document or null]")
            flag = _decode(name, raw)
            if raw is not None and flag is None:
                raise ValueError("the document is not a flag")
        except (ValueError, TypeError) as exc:
            raise MalformedMessageError(
                f"{self.channel}: {data[:80]!r} is not a flag change ({exc})",
                channel=self.channel,
                data=data[:200],
            ) from exc
        self._apply(version, name, flag, own=False)


def _same_server(client: redis.Redis) -> tuple[redis.Redis, bool]:
    """A client of the same server, with the same options, and a pool of its own;
    and whether it is new (the caller of this function then closes it).

    See :func:`labkit.core.clients.client_like`. A pool of another kind
    (Sentinel's, whose connections find the primary themselves) cannot be
    copied: the caller's client is then shared, as it was before.
    ``tests/test_ratelimit_faults.py::
    test_listener_survives_its_caller_closing_the_client`` checks the copy.
    """
    own = client_like(client)
    return (client, False) if own is None else (own, True)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
