"""Deterministic hash functions for placing keys, and Redis Cluster's key slot.

Python's built-in ``hash()`` is salted per process (``PYTHONHASHSEED``), so two
processes would disagree on where a key lives: nothing here uses it.
"""

from __future__ import annotations

import hashlib

__all__ = ["SLOTS", "char_sum", "crc16", "hash64", "key_slot", "mix64", "to_bytes"]

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


def char_sum(key: str | bytes) -> int:
    """The tutorial's hash: the sum of the key's character codes.

    Deterministic, but poor: anagrams (``abc``, ``cba``) always collide and
    short keys only reach a narrow range of sums, so ``char_sum % n`` spreads
    keys unevenly. Kept to show that mistake.
    """
    data = to_bytes(key)
    return sum(data)


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


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of ``key``: ``CRC16(key) mod 16384``.

    If the key holds a hash tag (``{...}`` with at least one character inside,
    the first ``{`` and the first ``}`` after it), only the tag is hashed, so
    ``cart:{42}`` and ``orders:{42}`` share a slot and may be used together in
    one multi-key command.
    """
    data = to_bytes(key)
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc16(data) % SLOTS
