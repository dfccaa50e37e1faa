"""Routers: map a key to one of N named nodes, each by a different algorithm."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from zlib import crc32 as _crc32

from labkit.core.args import check_callable, check_int, check_names, check_number
from labkit.sharding._hash import hash64, mix64, to_bytes

__all__ = ["HashRing", "JumpHash", "ModuloRouter", "Rendezvous", "Router"]

_TWO64 = float(1 << 64)
#: Positions on a :class:`HashRing`: ``[0, 2**32)``, as ketama's.
RING_SIZE = 1 << 32


#: Upper bounds: a ring of 10,000 nodes x 10,000 points would take minutes
#: and gigabytes to build; a real deployment is far below each of these.
MAX_NODES = 10_000
MAX_VNODES = 10_000
MAX_WEIGHT = 1_000.0
MAX_POINTS = 2_000_000


def _check_nodes(nodes: Iterable[str]) -> tuple[str, ...]:
    names = tuple(check_names("nodes", nodes))
    if len(names) > MAX_NODES:
        raise ValueError(f"nodes: {len(names)} names; at most {MAX_NODES} allowed")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"nodes={list(names)!r}: duplicate node names {dupes!r}")
    return names


def _check_weights(
    nodes: tuple[str, ...], weights: Mapping[str, float] | None
) -> dict[str, float]:
    if weights is None:
        weights = {}
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"weights={weights!r}: must be a mapping {{node name: weight}} or None"
        )
    unknown = sorted(set(weights) - set(nodes), key=repr)
    if unknown:
        raise ValueError(f"weights: {unknown!r} are not among nodes {list(nodes)!r}")
    for name, w in weights.items():
        check_number(f"weights[{name!r}]", w, min=0, max=MAX_WEIGHT, min_open=True)
    return {n: float(weights.get(n, 1.0)) for n in nodes}


class Router(ABC):
    """Maps keys to node names. Subclasses implement :meth:`node_for`.

    Args:
        nodes: Distinct, non-empty node names, e.g. ``["redis-a", "redis-b"]``.

    Raises:
        ValueError: No nodes, duplicate or empty names, more than 10,000.
        TypeError: ``nodes`` is a bare str, or a name is not a str.
    """

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes: tuple[str, ...] = _check_nodes(nodes)

    @abstractmethod
    def node_for(self, key: str | bytes) -> str:
        """The name of the node that owns ``key``."""

    @abstractmethod
    def with_nodes(self, nodes: Iterable[str]) -> Router:
        """A router of the same kind and settings over other nodes."""

    def group(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Keys grouped by owning node, each group in input order."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(self.node_for(key), []).append(key)
        return groups

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.nodes)!r})"


class ModuloRouter(Router):
    """``nodes[hash(key) % N]``: simple, even, and wrong to grow.

    Args:
        nodes: Node names.
        hash: Key -> non-negative int; 64-bit BLAKE2b by default. Pass
            the tutorial's character sum (``labkit.lab.sharding.char_sum``).

    Changing N changes ``hash % N`` for almost every key: going from N to N+1
    nodes moves about ``N/(N+1)`` of the keys (3 -> 4 moves about 3/4).
    """

    def __init__(
        self,
        nodes: Iterable[str],
        hash: Callable[[str | bytes], int] = hash64,
    ) -> None:
        super().__init__(nodes)
        self.hash = check_callable("hash", hash, signature="key -> int >= 0")

    def node_for(self, key: str | bytes) -> str:
        return self.nodes[self.hash(key) % len(self.nodes)]

    def with_nodes(self, nodes: Iterable[str]) -> ModuloRouter:
        return ModuloRouter(nodes, hash=self.hash)

    def __repr__(self) -> str:
        return f"ModuloRouter({list(self.nodes)!r}, hash={self.hash.__name__})"


class HashRing(Router):
    """Consistent hashing: nodes own arcs of a 32-bit ring, via virtual nodes.

    Each node is placed ``vnodes * weight`` times on the ring (at the top 32
    bits of ``hash64("name#i")``); a key belongs to the first point clockwise
    from ``hash32(key)``. Adding a node takes over only the arcs in front of
    its own points, about ``1/(N+1)`` of the keys. More virtual nodes even out
    the arc lengths at the cost of a bigger table (lookups stay
    ``O(log points)``).

    Two hashes, on purpose: the points come from BLAKE2b (:func:`hash64`),
    whose spread evens out the arcs and whose cost is paid once per ring; the
    keys from CRC-32 (:func:`hash32`), one C call per lookup, which spreads
    keys as evenly over well-spread arcs (placing the points with CRC-32 too
    would not: ``node#0``, ``node#1``... bunch up).

    Args:
        nodes: Node names.
        vnodes: Points per node of weight 1 (ketama uses 160).
        weights: Optional ``{name: weight > 0}``; missing names weigh 1.

    Raises:
        TypeError: ``vnodes`` is not an int (a bool is not), a weight not a
            number.
        ValueError: ``vnodes`` not from 1 to 10,000, a weight not in
            (0, 1000], an unknown name in weights, or more than 2,000,000
            points in all (about a second and 200 MB to build).
    """

    def __init__(
        self,
        nodes: Iterable[str],
        vnodes: int = 160,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(nodes)
        self.vnodes = check_int("vnodes", vnodes, min=1, max=MAX_VNODES)
        self.weights = _check_weights(self.nodes, weights)
        per_node = {n: max(1, round(vnodes * w)) for n, w in self.weights.items()}
        total = sum(per_node.values())
        if total > MAX_POINTS:
            raise ValueError(
                f"vnodes={vnodes!r}: with these nodes and weights the ring would "
                f"hold {total:,} points; at most {MAX_POINTS:,} allowed (lower "
                "vnodes or the weights)"
            )
        points = sorted(
            (hash64(f"{name}#{i}") >> 32, name)
            for name, count in per_node.items()
            for i in range(count)
        )
        self._points = [p for p, _ in points]
        # One owner more than points: past the last point, the ring wraps to
        # the first one, so a lookup needs no bounds check.
        self._owners = [name for _, name in points] + [points[0][1]]

    def node_for(self, key: str | bytes) -> str:
        # The lookup the notebook shows: the first point clockwise of the key.
        if type(key) is str:
            return self._owners[bisect_right(self._points, _crc32(key.encode()))]
        return self._owners[bisect_right(self._points, _crc32(to_bytes(key)))]

    @property
    def ring(self) -> list[tuple[int, str]]:
        """The ring as sorted ``(point, node)`` pairs (a copy)."""
        return list(zip(self._points, self._owners[:-1], strict=True))

    def with_nodes(self, nodes: Iterable[str]) -> HashRing:
        names = _check_nodes(nodes)
        kept = {n: w for n, w in self.weights.items() if n in names}
        return HashRing(names, vnodes=self.vnodes, weights=kept)

    def shares(self) -> dict[str, float]:
        """Fraction of the ring (so of uniformly hashed keys) each node owns."""
        shares = dict.fromkeys(self.nodes, 0.0)
        prev = self._points[-1] - RING_SIZE  # the arc that wraps past zero
        for point, owner in zip(self._points, self._owners[:-1], strict=True):
            shares[owner] += (point - prev) / RING_SIZE
            prev = point
        return shares

    def __repr__(self) -> str:
        return f"HashRing({list(self.nodes)!r}, vnodes={self.vnodes})"


class Rendezvous(Router):
    """Highest random weight: every node scores the key, the top score wins.

    No table at all, and adding a node moves exactly the keys it now wins
    (about ``1/(N+1)``); the price is ``O(N)`` work per lookup. With weights
    the score is ``-weight / ln(u)`` for a uniform ``u`` derived from the
    key and node, which gives each node a share proportional to its weight.

    Args:
        nodes: Node names.
        weights: Optional ``{name: weight > 0}``; missing names weigh 1.
    """

    def __init__(
        self, nodes: Iterable[str], weights: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(nodes)
        self.weights = _check_weights(self.nodes, weights)
        self._seeds = [(hash64(name), name) for name in self.nodes]
        self._weighted = len(set(self.weights.values())) > 1

    def node_for(self, key: str | bytes) -> str:
        h = hash64(key)
        if not self._weighted:
            return max((mix64(h ^ seed), name) for seed, name in self._seeds)[1]
        best, best_name = -math.inf, self.nodes[0]
        for seed, name in self._seeds:
            u = (mix64(h ^ seed) + 0.5) / _TWO64  # in (0, 1), never 0 or 1
            score = -self.weights[name] / math.log(u)
            if score > best:
                best, best_name = score, name
        return best_name

    def with_nodes(self, nodes: Iterable[str]) -> Rendezvous:
        names = _check_nodes(nodes)
        kept = {n: w for n, w in self.weights.items() if n in names}
        return Rendezvous(names, weights=kept)


def jump_bucket(key: int, buckets: int) -> int:
    """Lamping & Veach's jump consistent hash: a 64-bit int -> ``[0, buckets)``.

    Going from ``n`` to ``n+1`` buckets moves a key only into the new bucket,
    with probability ``1/(n+1)``; no memory, ``O(ln n)`` steps.
    """
    check_int("key", key, min=0, max=(1 << 64) - 1, what="a 64-bit unsigned int")
    return _jump(key, check_int("buckets", buckets))


def _jump(key: int, buckets: int) -> int:
    # jump_bucket without the argument checks, for JumpHash's hot path.
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


class JumpHash(Router):
    """Jump consistent hash over a numbered list of nodes.

    Node ``i`` is bucket ``i``. Growth must append at the end and shrinking
    must drop the last node: removing a node from the middle renumbers the
    rest and moves most keys (use :class:`HashRing` or :class:`Rendezvous`
    when arbitrary nodes can leave).
    """

    def node_for(self, key: str | bytes) -> str:
        return self.nodes[_jump(hash64(key), len(self.nodes))]

    def with_nodes(self, nodes: Sequence[str] | Iterable[str]) -> JumpHash:
        return JumpHash(nodes)
