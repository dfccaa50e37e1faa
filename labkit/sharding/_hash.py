"""Deterministic hash functions for placing keys, and Redis Cluster's key slot.

Python's built-in ``hash()`` is salted per process (``PYTHONHASHSEED``), so two
processes would disagree on where a key lives: nothing here uses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from zlib import crc32 as _crc32

from labkit.core.args import check_tag
from labkit.errors import CrossSlotError

__all__ = [
    "SLOTS",
    "crc16",
    "hash32",
    "hash64",
    "hash_tag",
    "key_slot",
    "mix64",
    "same_slot",
    "tagged",
    "to_bytes",
]

#: Number of hash slots in Redis Cluster.
SLOTS = 16384

_MASK64 = (1 << 64) - 1


def to_bytes(key: str | bytes) -> bytes:
    """UTF-8 bytes of a key; bytes pass through.

    Raises:
        TypeError: ``key`` is neither ``str`` nor ``bytes``.
    """
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key
    raise TypeError(f"key={key!r}: expected str or bytes, got {type(key).__name__}")


def hash64(key: str | bytes) -> int:
    """A 64-bit hash of ``key`` (BLAKE2b, 8-byte digest), the same in every process.

    Returns:
        An int in ``[0, 2**64)``.
    """
    return int.from_bytes(hashlib.blake2b(to_bytes(key), digest_size=8).digest())


def hash32(key: str | bytes) -> int:
    """CRC-32 of the key's UTF-8 bytes: a 32-bit position, cheap to compute.

    One C call (:func:`zlib.crc32`), where :func:`hash64` builds a BLAKE2b
    object per key: :class:`~labkit.sharding.HashRing` places *keys* with it.
    CRC-32 is linear, so it must not place the ring's points as well (points
    named ``node#0``, ``node#1``... would bunch up): the ring takes those from
    :func:`hash64`, where the spread matters and the cost is paid once.

    Returns:
        An int in ``[0, 2**32)``, the same in every process.
    """
    if type(key) is str:
        return _crc32(key.encode())
    return _crc32(to_bytes(key))


def mix64(x: int) -> int:
    """The SplitMix64 finalizer: scrambles a 64-bit int so every bit affects all.

    Used by :class:`~labkit.sharding.Rendezvous` to derive one score per node
    from a single key hash, cheaper than hashing ``node + key`` per node.
    """
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster uses for key slots."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def hash_tag(key: str | bytes) -> bytes:
    """The part of ``key`` Redis Cluster hashes: its hash tag, or the whole key.

    The tag is what lies between the first ``{`` and the first ``}`` after
    it, if that is not empty. ``"a{}b"`` has no tag (the whole key is hashed),
    and ``"{}x}"``'s tag is not ``"}x"``: braces inside a tag value break it.
    """
    data = to_bytes(key)
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            return data[start + 1 : end]
    return data


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of ``key``: ``CRC16(key) mod 16384``.

    If the key holds a hash tag (``{...}`` with at least one character inside,
    the first ``{`` and the first ``}`` after it), only the tag is hashed, so
    ``cart:{42}`` and ``orders:{42}`` share a slot and may be used together in
    one multi-key command.
    """
    return crc16(hash_tag(key)) % SLOTS


def tagged(tag: str | int, *parts: str | int, sep: str = ":") -> str:
    """A key whose slot is decided by ``tag`` alone: ``{<tag>}:<part>:<part>``.

    Keys built with the same tag share a cluster slot, so one multi-key
    command, transaction or script may use them together.

    Raises:
        TypeError, ValueError: ``tag`` is empty or contains a brace (which
            would silently make a different tag, or none), or a part is not
            a str/int.
    """
    text = check_tag("tag", tag)
    for i, part in enumerate(parts):
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise TypeError(f"parts[{i}]={part!r}: must be a str or an int")
    return sep.join([f"{{{text}}}", *map(str, parts)])


def same_slot(keys: Iterable[str | bytes]) -> int:
    """The one slot all ``keys`` share, or a clear error before any command runs.

    A cluster node refuses a multi-key command (``MGET``, ``MULTI``, a script)
    whose keys span two slots with ``CROSSSLOT``, even when one node owns
    both slots: slots move between nodes independently.

    Raises:
        TypeError: ``keys`` is a bare str/bytes (one key, not a list).
        ValueError: ``keys`` is empty.
        CrossSlotError: The keys map to more than one slot.
    """
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise TypeError(
            f"keys={keys!r}: must be a list of keys (a bare str is one key: "
            f"write [{keys!r}])"
        )
    found: dict[int, list[str | bytes]] = {}
    for key in keys:
        found.setdefault(key_slot(key), []).append(key)
    if not found:
        raise ValueError("keys=[]: need at least one key")
    if len(found) > 1:
        slots = sorted(found)
        raise CrossSlotError(
            f"keys map to {len(slots)} slots {slots[:5]}"
            f"{'...' if len(slots) > 5 else ''} "
            f"(e.g. {found[slots[0]][0]!r} -> {slots[0]}, "
            f"{found[slots[1]][0]!r} -> {slots[1]}): a multi-key command needs "
            "one slot; give the keys a common hash tag, e.g. tagged('user:1', ...)",
            keys=[k for group in found.values() for k in group],
            slots=slots,
        )
    return next(iter(found))
