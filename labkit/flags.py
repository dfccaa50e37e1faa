"""Library: feature flags in Redis, read from a local copy kept fresh by pub/sub.

Reading a flag costs no round trip: every :class:`FlagStore` holds a copy of
the flag set, and a background thread applies the changes other processes
announce on a channel. A change reaches every process in about one pub/sub
hop (milliseconds); a process that was disconnected reloads everything when
its subscription comes back, since pub/sub does not replay missed messages.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from labkit.core.wait import wait_until

__all__ = ["Flag", "FlagStore", "propagation_ms", "rollout_bucket"]


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


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class FlagStore:
    """A flag set in one Redis hash, mirrored locally in each process.

    Args:
        client: A ``redis.Redis``; the listener takes one more connection from
            its pool for the subscription.
        namespace: Names the flag set; several sets can live side by side.
        on_change: Optional callback ``(name, flag or None)`` run on the
            listener thread after a change is applied (None: deleted).

    Keys: ``lab:flags:<namespace>``, a hash ``{flag name: JSON {on, value,
    percent}}``, with no TTL (flags are configuration). Channel:
    ``lab:flags:<namespace>:changed``, carrying ``[name, JSON or null]`` for
    each change, published in the same ``MULTI`` as the write.

    Use as a context manager, or call :meth:`close` to stop the listener.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "default",
        *,
        on_change: Callable[[str, Flag | None], None] | None = None,
    ) -> None:
        if not isinstance(client, redis.Redis):
            raise TypeError(f"client={client!r}: must be a redis.Redis")
        if not isinstance(namespace, str) or not namespace:
            raise TypeError(f"namespace={namespace!r}: must be a non-empty str")
        self.client = client
        self.key = f"lab:flags:{namespace}"
        self.channel = f"{self.key}:changed"
        self.on_change = on_change
        self._flags: dict[str, Flag] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._pubsub = client.pubsub()
        # Subscribe before the first load, so no change falls between the two.
        self._pubsub.subscribe(self.channel)
        self._thread = threading.Thread(
            target=self._listen, name=f"FlagStore({namespace})", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=10):
            self.close()
            raise TimeoutError(f"FlagStore: no subscription to {self.channel} in 10 s")

    # -- reading: local, no round trip ------------------------------------
    def get(self, name: str) -> Flag | None:
        """The local copy of flag ``name``, or None if there is no such flag."""
        return self._flags.get(name)

    def is_enabled(
        self, name: str, actor: str | None = None, default: bool = False
    ) -> bool:
        """True if flag ``name`` is on (for ``actor``, under a percentage rollout).

        Args:
            name: The flag.
            actor: Who is asking (user id...). Needed when the flag's
                ``percent`` is below 100; without it a partial rollout is off.
            default: Returned when the flag does not exist.
        """
        flag = self._flags.get(name)
        if flag is None:
            return default
        if not flag.on:
            return False
        if flag.percent >= 100:
            return True
        if actor is None:
            return False
        return rollout_bucket(name, str(actor)) < flag.percent

    def value(self, name: str, default: Any = None) -> Any:
        """The value of flag ``name`` if it exists and is on, else ``default``."""
        flag = self._flags.get(name)
        return flag.value if flag is not None and flag.on else default

    def all(self) -> dict[str, Flag]:
        """A snapshot of every flag, by name."""
        return dict(self._flags)

    def wait_until(
        self, check: Callable[[FlagStore], bool], timeout: float = 5.0
    ) -> bool:
        """Poll the local copy until ``check(self)`` is true; False on timeout.

        For code that must see another process's change before going on
        (tests, demos): changes arrive asynchronously, within milliseconds.
        """
        return wait_until(lambda: check(self), timeout, interval=0.0001)

    # -- writing: one round trip, seen by every store ------------------------
    def set(
        self, name: str, on: bool = True, value: Any = None, *, percent: float = 100.0
    ) -> Flag:
        """Create or change flag ``name`` and tell every process.

        The hash write and the announcement go in one ``MULTI``/``EXEC``, so
        every listener hears of the changes in the order they were made.

        Raises:
            TypeError, ValueError: A bad name, on, percent or a value that is
                not JSON-serialisable.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"name={name!r}: must be a non-empty str")
        if not isinstance(on, bool):
            raise TypeError(f"on={on!r}: must be True or False")
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise TypeError(f"percent={percent!r}: must be a number 0..100")
        if not (math.isfinite(percent) and 0 <= percent <= 100):
            raise ValueError(f"percent={percent!r}: must be between 0 and 100")
        try:
            doc = json.dumps({"on": on, "value": value, "percent": percent})
        except TypeError as exc:
            raise TypeError(f"value={value!r}: must be JSON-serialisable") from exc
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key, name, doc)
        pipe.publish(self.channel, json.dumps([name, doc]))
        pipe.execute()
        flag = Flag(name, on, value, float(percent))
        self._apply(name, flag)  # our own readers need not wait for the echo
        return flag

    def delete(self, name: str) -> None:
        """Remove flag ``name`` everywhere."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.key, name)
        pipe.publish(self.channel, json.dumps([name, None]))
        pipe.execute()
        self._apply(name, None)

    # -- the listener --------------------------------------------------------
    def _decode(self, name: str, raw: str | bytes | None) -> Flag | None:
        """A flag from its JSON; None if absent or not written by a FlagStore."""
        if raw is None:
            return None
        try:
            doc = json.loads(_text(raw))
            return Flag(
                name, bool(doc["on"]), doc.get("value"), float(doc.get("percent", 100))
            )
        except (ValueError, TypeError, KeyError):
            return None

    def _apply(self, name: str, flag: Flag | None) -> None:
        if flag is None:
            self._flags.pop(name, None)
        else:
            self._flags[name] = flag
        if self.on_change is not None:
            self.on_change(name, flag)

    def reload(self) -> None:
        """Replace the local copy with the server's flag set (one ``HGETALL``)."""
        raw = self.client.hgetall(self.key)
        self._flags = {
            _text(k): f for k, v in raw.items() if (f := self._decode(_text(k), v))
        }

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._pubsub.get_message(timeout=0.1)
                if msg is None:
                    continue
                if msg["type"] == "subscribe":
                    # First subscription, or a re-subscription after a lost
                    # connection (redis-py re-subscribes): changes may have been
                    # missed, so take the whole set again.
                    self.reload()
                    self._ready.set()
                elif msg["type"] == "message":
                    # The message carries the new state, so listeners apply
                    # every change in order without reading the hash back.
                    name, raw = json.loads(_text(msg["data"]))
                    self._apply(name, self._decode(name, raw))
            except (redis.ConnectionError, redis.TimeoutError):
                self._stop.wait(0.2)
            except (ValueError, TypeError):
                self.reload()  # a message we cannot read: resync from the hash

    def close(self) -> None:
        """Stop the listener thread and release its connection (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._pubsub.close()

    def __enter__(self) -> FlagStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def propagation_ms(
    writer: FlagStore, reader: FlagStore, n: int = 50, *, flag: str = "probe"
) -> list[float]:
    """Time ``n`` changes from ``writer.set`` until ``reader``'s copy has them.

    Milliseconds per change (each waits at most 5 s). ``flag`` is set to
    0..n-1 and deleted afterwards.

    Raises:
        TimeoutError: A change did not reach ``reader`` within 5 s.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: must be an int >= 1")
    delays = []
    try:
        for i in range(n):
            start = time.perf_counter()
            writer.set(flag, value=i)

            def arrived(store: FlagStore, i: int = i) -> bool:
                return bool(store.value(flag) == i)

            if not reader.wait_until(arrived):
                raise TimeoutError(f"change {i} of {flag!r} did not arrive in 5 s")
            delays.append((time.perf_counter() - start) * 1000)
    finally:
        writer.delete(flag)
    return delays
