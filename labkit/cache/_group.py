"""Grouped invalidation: an owner's entries dropped by one call, each still expiring."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from labkit.cache._base import (
    PREFIX,
    CacheStats,
    check_client,
    check_jitter,
    check_key,
    check_loader,
    check_namespace,
    check_seconds,
    decode,
    encode,
    ttl_ms,
)

__all__ = ["GroupedCache", "supports_field_expiry"]


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def supports_field_expiry(client: Any) -> bool:
    """True if the server knows ``HEXPIRE`` (Redis 7.4+, Valkey 9+).

    Asks ``COMMAND INFO hexpire``, which answers a nil entry for an unknown
    command rather than an error. (redis-py's ``command_info()`` takes no
    name, so the command is sent as one two-word command name.)
    """
    reply = client.execute_command("COMMAND INFO", "hexpire")
    return bool(reply) and reply[0] is not None


class GroupedCache:
    """Cached query results grouped by owner, all invalidated by one call.

    The per-user query cache of the tutorials: each user's query results live
    together so that any write by that user drops them all at once. Unlike the
    tutorial (whose ``HMSET ... 'EX', 300`` stored a field named ``EX`` and never
    expired anything), every entry here really expires after ``ttl``.

    Args:
        client: A ``redis.Redis``.
        namespace: Names this cache's keys; non-empty, no braces.
        ttl: Seconds each entry lives (> 0).
        jitter: Stretch each entry's TTL by up to this fraction (0 to 1).
        per_field_expiry: Use one hash per owner with ``HPEXPIRE`` on each field
            (True), or a key per entry plus an index set per owner (False).
            None (default) picks True when :func:`supports_field_expiry`.
        rng: Random source for the jitter.

    Keys (``<ns>`` namespace, ``<owner>`` e.g. a user id, ``<key>`` the query)::

        per_field_expiry=True
          lab:cache:<ns>:{<owner>}              hash   field <key> -> JSON,
                                                       each field PX ttl; the
                                                       key's TTL >= every field's
        per_field_expiry=False
          lab:cache:<ns>:{<owner>}:entry:<key>  string JSON, PX ttl
          lab:cache:<ns>:{<owner>}:index        set    entry key names, TTL >=
                                                       every entry's

    The hash tag keeps an owner's keys in one cluster slot, so the transaction
    that writes an entry and its index is legal on a cluster.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        ttl: float,
        *,
        jitter: float = 0.0,
        per_field_expiry: bool | None = None,
        rng: random.Random | None = None,
    ) -> None:
        check_client(client)
        self.client = client
        self.namespace = check_namespace(namespace)
        self.ttl = check_seconds("ttl", ttl)
        self.jitter = check_jitter(jitter)
        if per_field_expiry is None:
            per_field_expiry = supports_field_expiry(client)
        elif not isinstance(per_field_expiry, bool):
            raise TypeError(
                f"per_field_expiry={per_field_expiry!r}: expected True, False or None"
            )
        self.per_field_expiry = per_field_expiry
        self.rng = rng if rng is not None else random.Random()
        self.stats = CacheStats()

    def __repr__(self) -> str:
        mode = "HPEXPIRE" if self.per_field_expiry else "key per entry + index"
        return f"GroupedCache(namespace={self.namespace!r}, ttl={self.ttl:g}, {mode})"

    def owner_key(self, owner: str | int) -> str:
        """The hash of ``owner``'s entries (per-field expiry mode)."""
        return f"{PREFIX}:{self.namespace}:{{{check_key('owner', owner)}}}"

    def entry_key(self, owner: str | int, key: str | int) -> str:
        """The string key of one entry (key-per-entry mode)."""
        return f"{self.owner_key(owner)}:entry:{check_key('key', key)}"

    def index_key(self, owner: str | int) -> str:
        """The set listing ``owner``'s entry keys (key-per-entry mode)."""
        return f"{self.owner_key(owner)}:index"

    def group_key(self, owner: str | int) -> str:
        """The key that groups ``owner``'s entries: the hash, or the index set."""
        if self.per_field_expiry:
            return self.owner_key(owner)
        return self.index_key(owner)

    def entry_ttls(self, owner: str | int) -> dict[str, int]:
        """Remaining TTL in ms of each of ``owner``'s cached entries, by key.

        The same answer in both modes (``HPTTL`` of the hash's fields, or
        ``PTTL`` of the entry keys the index lists); ``{}`` when none are left.
        """
        if self.per_field_expiry:
            group = self.owner_key(owner)
            keys = sorted(_text(k) for k in self.client.hkeys(group))
            ttls = self.client.hpttl(group, *keys) if keys else []
        else:
            entries = sorted(
                _text(k) for k in self.client.smembers(self.index_key(owner))
            )
            pipe = self.client.pipeline(transaction=False)
            for entry in entries:
                pipe.pttl(entry)
            ttls = pipe.execute()
            cut = len(self.entry_key(owner, ""))
            keys = [entry[cut:] for entry in entries]
        # -2: the entry expired after being listed, so it is not cached.
        return {k: int(t) for k, t in zip(keys, ttls, strict=True) if t != -2}

    def get_or_load(
        self, owner: str | int, key: str | int, loader: Callable[[], Any]
    ) -> Any:
        """Return ``owner``'s cached ``key``, calling ``loader()`` on a miss.

        Raises:
            TypeError: ``loader`` is not callable or returned a value JSON
                cannot encode. Whatever ``loader`` raises propagates; nothing
                is cached then.
        """
        check_loader(loader)
        key = check_key("key", key)
        start = time.perf_counter()
        if self.per_field_expiry:
            raw = self.client.hget(self.owner_key(owner), key)
        else:
            raw = self.client.get(self.entry_key(owner, key))
        if raw is not None:
            value = decode(raw)
            self.stats.record("hit", time.perf_counter() - start)
            return value
        self.stats.count("loads")
        try:
            value = loader()
        except BaseException:
            self.stats.count("load_errors")
            raise
        self._store(owner, key, encode(key, value))
        self.stats.record("miss", time.perf_counter() - start)
        return value

    def _store(self, owner: str | int, key: str, payload: str) -> None:
        ms = ttl_ms(self.ttl, self.jitter, self.rng)
        pipe = self.client.pipeline(transaction=True)
        if self.per_field_expiry:
            group = self.owner_key(owner)
            pipe.hset(group, key, payload)
            pipe.hpexpire(group, ms, key)
        else:
            group = self.index_key(owner)
            entry = self.entry_key(owner, key)
            pipe.set(entry, payload, px=ms)
            pipe.sadd(group, entry)
        # The group key outlives its longest entry: set a TTL if it has none
        # (NX), lengthen it if this entry lives longer (GT).
        pipe.pexpire(group, ms, nx=True)
        pipe.pexpire(group, ms, gt=True)
        pipe.execute()

    def invalidate(self, owner: str | int, key: str | int) -> bool:
        """Drop one of ``owner``'s entries; True if it existed."""
        if self.per_field_expiry:
            return bool(self.client.hdel(self.owner_key(owner), check_key("key", key)))
        entry = self.entry_key(owner, key)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(entry)
        pipe.srem(self.index_key(owner), entry)
        return bool(pipe.execute()[0])

    def invalidate_owner(self, owner: str | int) -> int:
        """Drop every entry of ``owner`` in one call; returns how many there were."""
        if self.per_field_expiry:
            pipe = self.client.pipeline(transaction=True)
            pipe.hlen(self.owner_key(owner))
            pipe.delete(self.owner_key(owner))
            return int(pipe.execute()[0])
        index = self.index_key(owner)
        entries = self.client.smembers(index)
        if not entries:
            return 0
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*entries)
        # SREM only what we read: an entry added meanwhile stays indexed.
        pipe.srem(index, *entries)
        return int(pipe.execute()[0])
