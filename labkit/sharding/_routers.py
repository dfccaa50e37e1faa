"""Routers: map a key to one of N named nodes, each by a different algorithm."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence

from labkit.sharding._hash import hash64, mix64

__all__ = ["HashRing", "JumpHash", "ModuloRouter", "Rendezvous", "Router"]

_TWO64 = float(1 << 64)


def _check_nodes(nodes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(nodes, str | bytes):
        raise TypeError(f"nodes={nodes!r}: expected a list of node names, not one")
    names = tuple(nodes)
    if not names:
        raise ValueError("nodes=[]: need at least one node name")
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"nodes: node name {name!r} must be a non-empty str")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"nodes={list(names)!r}: duplicate node names {dupes!r}")
    return names


def _check_weights(
    nodes: tuple[str, ...], weights: Mapping[str, float] | None
) -> dict[str, float]:
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(nodes))
    if unknown:
        raise ValueError(f"weights: {unknown!r} are not among nodes {list(nodes)!r}")
    for name, w in weights.items():
        if not isinstance(w, int | float) or not w > 0 or math.isinf(w):
            raise ValueError(f"weights[{name!r}]={w!r}: must be a finite number > 0")
    return {n: float(weights.get(n, 1.0)) for n in nodes}


class Router(ABC):
    """Maps keys to node names. Subclasses implement :meth:`node_for`.

    Args:
        nodes: Distinct, non-empty node names, e.g. ``["redis-a", "redis-b"]``.

    Raises:
        ValueError: No nodes, or duplicate names.
        TypeError: A name is not a string.
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
            :func:`~labkit.sharding.char_sum` for the tutorial's character sum.

    Changing N changes ``hash % N`` for almost every key: going from N to N+1
    nodes moves about ``N/(N+1)`` of the keys (3 -> 4 moves about 3/4).
    """

    def __init__(
        self,
        nodes: Iterable[str],
        hash: Callable[[str | bytes], int] = hash64,
    ) -> None:
        super().__init__(nodes)
        if not callable(hash):
            raise TypeError(f"hash={hash!r}: expected a callable key -> int")
        self.hash = hash

    def node_for(self, key: str | bytes) -> str:
        return self.nodes[self.hash(key) % len(self.nodes)]

    def with_nodes(self, nodes: Iterable[str]) -> ModuloRouter:
        return ModuloRouter(nodes, hash=self.hash)

    def __repr__(self) -> str:
        return f"ModuloRouter({list(self.nodes)!r}, hash={self.hash.__name__})"


class HashRing(Router):
    """Consistent hashing: nodes own arcs of a 64-bit ring, via virtual nodes.

    Each node is placed ``vnodes * weight`` times on the ring (at
    ``hash64("name#i")``); a key belongs to the first point clockwise from
    ``hash64(key)``. Adding a node takes over only the arcs in front of its own
    points, about ``1/(N+1)`` of the keys. More virtual nodes even out the arc
    lengths at the cost of a bigger table (lookups stay ``O(log points)``).

    Args:
        nodes: Node names.
        vnodes: Points per node of weight 1 (ketama uses 160).
        weights: Optional ``{name: weight > 0}``; missing names weigh 1.

    Raises:
        ValueError: ``vnodes < 1``, a weight <= 0, or an unknown name in weights.
    """

    def __init__(
        self,
        nodes: Iterable[str],
        vnodes: int = 160,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(nodes)
        if not isinstance(vnodes, int) or isinstance(vnodes, bool) or vnodes < 1:
            raise ValueError(f"vnodes={vnodes!r}: must be an int >= 1")
        self.vnodes = vnodes
        self.weights = _check_weights(self.nodes, weights)
        points = sorted(
            (hash64(f"{name}#{i}"), name)
            for name in self.nodes
            for i in range(max(1, round(vnodes * self.weights[name])))
        )
        self._points = [p for p, _ in points]
        self._owners = [name for _, name in points]

    def node_for(self, key: str | bytes) -> str:
        i = bisect_right(self._points, hash64(key))
        return self._owners[i if i < len(self._points) else 0]

    def with_nodes(self, nodes: Iterable[str]) -> HashRing:
        names = _check_nodes(nodes)
        kept = {n: w for n, w in self.weights.items() if n in names}
        return HashRing(names, vnodes=self.vnodes, weights=kept)

    def shares(self) -> dict[str, float]:
        """Fraction of the ring (so of uniformly hashed keys) each node owns."""
        shares = dict.fromkeys(self.nodes, 0.0)
        prev = self._points[-1] - (1 << 64)  # the arc that wraps past zero
        for point, owner in zip(self._points, self._owners, strict=True):
            shares[owner] += (point - prev) / _TWO64
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
    if buckets < 1:
        raise ValueError(f"buckets={buckets!r}: must be >= 1")
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
        return self.nodes[jump_bucket(hash64(key), len(self.nodes))]

    def with_nodes(self, nodes: Sequence[str] | Iterable[str]) -> JumpHash:
        return JumpHash(nodes)
