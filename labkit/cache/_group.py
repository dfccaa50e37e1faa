"""Grouped invalidation: an owner's entries dropped by one call, each still expiring."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import redis

from labkit.cache._base import (
    PREFIX,
    CacheStats,
    ReadHook,
    check_namespace,
    check_on_read,
    check_prefix,
    decode,
    encode,
    raise_wrong_type,
    ttl_ms,
    wrong_type,
)
from labkit.core.args import (
    YEAR,
    Key,
    check_callable,
    check_key,
    check_number,
    check_seconds,
    check_tag,
)
from labkit.core.clients import check_client, server_version, supports
from labkit.core.keys import from_key_part, key_part
from labkit.core.scripts import Script
from labkit.errors import WrongTypeError

__all__ = ["GroupedCache", "supports_field_expiry"]

_STORE_FIELDS = Script("cache_group_store_fields")
_STORE_KEYS = Script("cache_group_store_keys")
_BUMP = Script("cache_group_bump")

#: The invalidation counter lives at least this long (ms), and at least as
#: long as an entry: a load slower than its TTL could store a stale result.
_MIN_GEN_MS = 60_000


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def supports_field_expiry(client: redis.Redis | redis.RedisCluster) -> bool:
    """True if the server has hash-field TTLs (``HPEXPIRE``: Redis 7.4+, Valkey 9+)."""
    return supports(client, "hash-field-ttl")


class GroupedCache:
    """Cached query results grouped by owner, all invalidated by one call.

    The per-user query cache of the tutorials: each user's query results live
    together so that any write by that user drops them all at once. Unlike the
    tutorial (whose ``HMSET ... 'EX', 300`` stored a field named ``EX`` and never
    expired anything), every entry here really expires after ``ttl``.

    Args:
        client: A ``redis.Redis`` or ``redis.RedisCluster``.
        namespace: Names this cache's keys; non-empty, no braces.
        ttl: Seconds each entry lives (> 0, at most a year).
        jitter: Stretch each entry's TTL by up to this fraction (0 to 1).
        per_field_expiry: One hash per owner with ``HPEXPIRE`` on each field
            (True), or a key per entry plus an index per owner (False). None
            (default) picks True when the server has hash-field TTLs (Redis
            7.4+, Valkey 9+), else False: the fallback for Redis 7.0-7.2.
        rng: A ``random.Random`` for the jitter.
        prefix: What every key starts with (default ``labkit:cache``);
            non-empty, no braces.
        on_read: Called after every read as ``on_read(outcome, seconds)``,
            outcome ``"hit"`` or ``"miss"``; None (default) reads no clock.

    Keys:
        ``<prefix>:group:{<namespace>:<owner>}`` (hash, ``per_field_expiry``):
        field = query key, value = JSON; each field has TTL ``ttl``, the key
        a TTL at least as long as its longest field.
        ``<prefix>:group:{<namespace>:<owner>}:entry:<key>`` (string, key per
        entry): the JSON value; TTL ``ttl``.
        ``<prefix>:group:{<namespace>:<owner>}:index`` (sorted set, key per
        entry): entry key names scored by expiry time, pruned of expired names
        at every store; TTL that of its latest entry.
        ``<prefix>:group:{<namespace>:<owner>}:gen`` (string): the owner's
        invalidation counter; TTL the longest entry TTL, at least 60 s.

    The hash tag keeps an owner's keys in one cluster slot (the scripts touch
    several of them), and holds the namespace so that owner ``7`` of two
    namespaces lands in two slots.

    Loads do not race with invalidations: a miss reads the owner's counter
    before calling the loader, the store script compares it, and
    :meth:`invalidate_owner` bumps it first. A result read from the origin
    before a write is dropped (``stats.dropped``), not cached after it.
    """

    #: The Lua scripts it runs, for printing.
    store_fields = _STORE_FIELDS
    store_keys = _STORE_KEYS
    bump = _BUMP

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        namespace: str,
        ttl: float,
        *,
        jitter: float = 0.0,
        per_field_expiry: bool | None = None,
        rng: random.Random | None = None,
        prefix: str = PREFIX,
        on_read: ReadHook | None = None,
    ) -> None:
        self.client = check_client(client, owner="GroupedCache")
        self.prefix = check_prefix(prefix)
        self.on_read = check_on_read(on_read)
        self.namespace = check_namespace(namespace)
        self.ttl = check_seconds("ttl", ttl, min=0.001, max=YEAR, min_open=False)
        self.jitter = check_number("jitter", jitter, min=0, max=1)
        if per_field_expiry is not None and not isinstance(per_field_expiry, bool):
            raise TypeError(
                f"per_field_expiry={per_field_expiry!r}: must be True, False or None"
            )
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(
                f"rng={rng!r}: must be a random.Random (e.g. random.Random(7)) or None"
            )
        has = supports_field_expiry(client)
        if per_field_expiry and not has:
            raise ValueError(
                f"per_field_expiry=True: this server ({server_version(client)}) has "
                "no hash-field TTLs (HPEXPIRE needs Redis 7.4+ or Valkey 9+); pass "
                "None to pick the key-per-entry fallback"
            )
        self.per_field_expiry = has if per_field_expiry is None else per_field_expiry
        self.rng = rng if rng is not None else random.Random()
        self.stats = CacheStats()
        longest = math.ceil(self.ttl * (1 + self.jitter) * 1000)
        self._gen_ms = max(_MIN_GEN_MS, longest)

    def __repr__(self) -> str:
        mode = "HPEXPIRE" if self.per_field_expiry else "key per entry + index"
        return f"GroupedCache(namespace={self.namespace!r}, ttl={self.ttl:g}, {mode})"

    # --- key names ----------------------------------------------------------
    def owner_key(self, owner: Key) -> str:
        """The hash of ``owner``'s entries (per-field expiry mode)."""
        ns, owner = key_part(self.namespace), key_part(check_tag("owner", owner))
        return f"{self.prefix}:group:{{{ns}:{owner}}}"

    def entry_key(self, owner: Key, key: Key) -> str:
        """The string key of one entry (key-per-entry mode)."""
        return f"{self.owner_key(owner)}:entry:{key_part(check_key('key', key))}"

    def index_key(self, owner: Key) -> str:
        """The sorted set listing ``owner``'s entry keys (key-per-entry mode)."""
        return f"{self.owner_key(owner)}:index"

    def gen_key(self, owner: Key) -> str:
        """``owner``'s invalidation counter."""
        return f"{self.owner_key(owner)}:gen"

    def group_key(self, owner: Key) -> str:
        """The key that groups ``owner``'s entries: the hash, or the index."""
        if self.per_field_expiry:
            return self.owner_key(owner)
        return self.index_key(owner)

    # --- reading ------------------------------------------------------------
    def entry_ttls(self, owner: Key) -> dict[str, int]:
        """Remaining TTL in ms of each of ``owner``'s cached entries, by key.

        The same answer in both modes (``HPTTL`` of the hash's fields, or
        ``PTTL`` of the entry keys the index lists); ``{}`` when none are left.
        """
        group = self.group_key(owner)
        try:
            if self.per_field_expiry:
                keys = sorted(_text(k) for k in self.client.hkeys(group))
                ttls = self.client.hpttl(group, *keys) if keys else []
            else:
                entries = sorted(_text(k) for k in self.client.zrange(group, 0, -1))
                pipe = self.client.pipeline(transaction=False)
                for entry in entries:
                    pipe.pttl(entry)
                ttls = pipe.execute()
                cut = len(self.entry_key(owner, "x")) - 1
                keys = [from_key_part(entry[cut:]) for entry in entries]
        except redis.ResponseError as exc:
            raise_wrong_type(self.client, group, self._group_type, exc)
        # -2: the entry expired after being listed, so it is not cached.
        return {k: int(t) for k, t in zip(keys, ttls, strict=True) if t != -2}

    @property
    def _group_type(self) -> str:
        return "hash" if self.per_field_expiry else "zset"

    def get_or_load(self, owner: Key, key: Key, loader: Callable[[], Any]) -> Any:
        """Return ``owner``'s cached ``key``, calling ``loader()`` on a miss.

        Raises:
            TypeError, ValueError: ``owner``, ``key`` or ``loader`` is not
                allowed (before anything is read or written).
            TypeError: ``loader`` returned a value JSON cannot encode.
            WrongTypeError: One of the owner's keys holds another type.
            Exception: Whatever ``loader`` raises propagates; nothing is cached.
        """
        check_callable("loader", loader, signature="taking no arguments")
        key = check_key("key", key)
        on_read = self.on_read
        start = time.perf_counter() if on_read is not None else 0.0
        read: Callable[[], Any]
        if self.per_field_expiry:
            where, kind = self.owner_key(owner), "hash"
            read = lambda: self.client.hget(where, key)  # noqa: E731
        else:
            where, kind = self.entry_key(owner, key), "string"
            read = lambda: self.client.get(where)  # noqa: E731
        try:
            raw = read()
        except redis.ResponseError as exc:
            raise_wrong_type(self.client, where, kind, exc)
        if raw is not None:
            value = decode(raw)
            self.stats.record("hit")
            if on_read is not None:
                on_read("hit", time.perf_counter() - start)
            return value
        # A miss reads the counter before the origin: an invalidation from
        # here on makes the store below refuse what the loader returns.
        gen_key = self.gen_key(owner)
        try:
            gen = self.client.get(gen_key)
        except redis.ResponseError as exc:
            raise_wrong_type(self.client, gen_key, "string", exc)
        self.stats.count("loads")
        try:
            value = loader()
        except BaseException:
            self.stats.count("load_errors")
            raise
        finally:
            self.stats.record("miss")
            if on_read is not None:
                on_read("miss", time.perf_counter() - start)
        self._store(owner, key, encode(key, value), _text(gen or ""))
        return value

    def _store(self, owner: Key, key: str, payload: str, gen: str) -> None:
        ms = ttl_ms(self.ttl, self.jitter, self.rng)
        gen_key = self.gen_key(owner)
        args: list[Key]
        if self.per_field_expiry:
            keys = [self.owner_key(owner), gen_key]
            script, args = _STORE_FIELDS, [gen, key, payload, ms]
            wrong = {-1: (keys[0], "hash"), -2: (gen_key, "string")}
        else:
            keys = [self.entry_key(owner, key), self.index_key(owner), gen_key]
            start = self.owner_key(owner) + ":entry:"
            script, args = _STORE_KEYS, [gen, payload, ms, start]
            wrong = {-1: (keys[0], "string"), -2: (gen_key, "string")}
            wrong[-3] = (keys[1], "zset")
        try:
            reply = script(self.client, keys, args)
        except redis.exceptions.OutOfMemoryError:
            self.stats.count("store_errors")
            return
        if reply == -4:
            raise self._foreign_index(keys[1])
        if reply == 0:
            self.stats.count("dropped")
        elif reply in wrong:
            where, kind = wrong[reply]
            raise_wrong_type(self.client, where, kind, ValueError(where))

    @staticmethod
    def _foreign_index(index: str) -> WrongTypeError:
        return wrong_type(
            index,
            expected="zset of this owner's entry keys",
            found="zset of other members",
        )

    # --- invalidating -------------------------------------------------------
    def _bump(self, owner: Key) -> None:
        """Count an invalidation: cancels every store of a load in flight."""
        group, gen = self.group_key(owner), self.gen_key(owner)
        reply = _BUMP(self.client, [group, gen], [self._group_type, self._gen_ms])
        if reply == -1:
            raise_wrong_type(self.client, group, self._group_type, ValueError(group))
        if reply == -2:
            raise_wrong_type(self.client, gen, "string", ValueError(gen))

    def invalidate(self, owner: Key, key: Key) -> bool:
        """Drop one of ``owner``'s entries; True if it existed.

        Also cancels the stores of every load of ``owner`` in flight (they
        reload on their next miss): a counter per owner, not per entry.
        """
        key = check_key("key", key)
        self._bump(owner)
        if self.per_field_expiry:
            return bool(self.client.hdel(self.owner_key(owner), key))
        entry = self.entry_key(owner, key)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(entry)
        pipe.zrem(self.index_key(owner), entry)
        return bool(pipe.execute()[0])

    def invalidate_owner(self, owner: Key) -> int:
        """Drop every entry of ``owner`` in one call; returns how many there were.

        Raises:
            WrongTypeError: A key holds another type, or the index is a
                sorted set of other members (the keys it names are not deleted).
        """
        if not self.per_field_expiry:  # someone else's sorted set: before the bump
            start = self.owner_key(owner) + ":entry:"
            try:
                first = self.client.zrange(self.index_key(owner), 0, 0)
            except redis.ResponseError as exc:
                raise_wrong_type(self.client, self.index_key(owner), "zset", exc)
            if first and not _text(first[0]).startswith(start):
                raise self._foreign_index(self.index_key(owner))
        self._bump(owner)
        if self.per_field_expiry:
            pipe = self.client.pipeline(transaction=True)
            pipe.hlen(self.owner_key(owner))
            pipe.delete(self.owner_key(owner))
            return int(pipe.execute()[0])
        index = self.index_key(owner)
        entries = self.client.zrange(index, 0, -1)
        if not entries:
            return 0
        # The index names the keys DEL is about to remove: every one must be
        # this owner's entry key, or the sorted set is someone else's.
        start = self.owner_key(owner) + ":entry:"
        if not all(_text(e).startswith(start) for e in entries):
            raise self._foreign_index(index)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*entries)
        # ZREM only what we read: an entry stored meanwhile (after the bump,
        # so loaded after the write) stays listed.
        pipe.zrem(index, *entries)
        return int(pipe.execute()[0])
