"""Lab: how well a router spreads keys, and how many keys move when nodes change."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from matplotlib.figure import Figure

from labkit.lab.plots.sharding import keys_per_node
from labkit.sharding import (
    HashRing,
    JumpHash,
    ModuloRouter,
    Rendezvous,
    Router,
)

__all__ = [
    "ROUTER_KINDS",
    "Spread",
    "char_sum",
    "explore_router",
    "growth_cost",
    "load_spread",
    "make_router",
    "moved_fraction",
    "ring_balance",
    "sample_keys",
]

#: The routers the notebook compares, by the label :func:`make_router` takes.
ROUTER_KINDS = ("modulo", "modulo (char sum)", "hash ring", "rendezvous", "jump hash")


def char_sum(key: str | bytes) -> int:
    """The URL-shortener tutorial's hash: the sum of the key's byte values.

    Deterministic, but narrow: every anagram (``abc``, ``cba``) gets the same
    sum, and keys of one shape reach only a few hundred distinct sums, all
    in a narrow range. Over three or four servers ``char_sum % n`` still
    spreads random keys about evenly; over many servers it piles keys onto
    some of them, and anagrams always share a server (notebook 04a measures
    both). Kept here, in the lab, to show that mistake; the library's routers
    hash with :func:`~labkit.sharding.hash64` or :func:`~labkit.sharding.hash32`.
    """
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes):
        raise TypeError(f"key={key!r}: expected str or bytes, got {type(key).__name__}")
    return sum(key)


class Spread(NamedTuple):
    """How evenly keys landed on nodes.

    Attributes:
        counts: ``{node: keys}`` for every node, including empty ones.
        max_over_mean: Busiest node's count / the mean count (1.0 is perfect;
            1.25 means the busiest node holds 25% more than its fair share).
        cv: Coefficient of variation (stdev / mean) of the counts.
    """

    counts: dict[str, int]
    max_over_mean: float
    cv: float


def sample_keys(n: int, *, seed: int = 0, prefix: str = "key:") -> list[str]:
    """``n`` distinct, reproducible keys such as ``key:5f3a9c01b2``.

    Args:
        n: How many keys (>= 1).
        seed: Seed of the random generator: same seed, same keys.
        prefix: Put in front of every key.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: must be an int >= 1")
    rng = random.Random(seed)
    keys: dict[str, None] = {}
    while len(keys) < n:
        keys[f"{prefix}{rng.getrandbits(40):010x}"] = None
    return list(keys)


def moved_fraction(before: Router, after: Router, keys: Iterable[str]) -> float:
    """Fraction of ``keys`` whose node differs between two routers.

    This is the share of data that must be moved when the cluster changes
    from ``before`` to ``after`` (or that goes missing if it is not moved).

    Raises:
        ValueError: ``keys`` is empty.
    """
    total = moved = 0
    for key in keys:
        total += 1
        moved += before.node_for(key) != after.node_for(key)
    if total == 0:
        raise ValueError("keys is empty: nothing to compare")
    return moved / total


def load_spread(router: Router, keys: Sequence[str] | Iterable[str]) -> Spread:
    """Count keys per node and summarise how even that is."""
    counts = Counter(router.node_for(k) for k in keys)
    if not counts:
        raise ValueError("keys is empty: nothing to count")
    full = {node: counts.get(node, 0) for node in router.nodes}
    mean = statistics.fmean(full.values())
    cv = statistics.pstdev(full.values()) / mean
    return Spread(full, max(full.values()) / mean, cv)


def make_router(kind: str, nodes: Iterable[str], *, vnodes: int = 160) -> Router:
    """Build a router by its label in :data:`ROUTER_KINDS`.

    Args:
        kind: ``"modulo"``, ``"modulo (char sum)"`` (the tutorial's rule),
            ``"hash ring"``, ``"rendezvous"`` or ``"jump hash"``.
        nodes: Node names.
        vnodes: Virtual nodes per node (hash ring only).

    Raises:
        ValueError: Unknown ``kind`` (or bad nodes / vnodes, from the router).
    """
    if kind == "modulo":
        return ModuloRouter(nodes)
    if kind == "modulo (char sum)":
        return ModuloRouter(nodes, hash=char_sum)
    if kind == "hash ring":
        return HashRing(nodes, vnodes=vnodes)
    if kind == "rendezvous":
        return Rendezvous(nodes)
    if kind == "jump hash":
        return JumpHash(nodes)
    raise ValueError(f"kind={kind!r}: expected one of {ROUTER_KINDS}")


def growth_cost(
    kind: str, nodes: int, keys: Iterable[str], *, vnodes: int = 160
) -> float:
    """Fraction of ``keys`` that move when a router over ``nodes`` nodes gets one more.

    The nodes are named ``node0`` ... ``node<nodes-1>``, the new one ``extra``.
    The ideal for a consistent scheme is ``1 / (nodes + 1)``.
    """
    if not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes={nodes!r}: must be an int >= 1")
    names = [f"node{i}" for i in range(nodes)]
    before = make_router(kind, names, vnodes=vnodes)
    after = make_router(kind, [*names, "extra"], vnodes=vnodes)
    return moved_fraction(before, after, keys)


def ring_balance(vnodes: int, *, nodes: int = 4, seed: int = 0) -> float:
    """Busiest node's exact share of a hash ring, over its fair share (1.0 is even).

    The ring's node names depend on ``seed`` (``s<seed>-n<i>``), since where
    the points land depends only on the names.
    """
    if not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes={nodes!r}: must be an int >= 1")
    ring = HashRing([f"s{seed}-n{i}" for i in range(nodes)], vnodes=vnodes)
    return max(ring.shares().values()) * nodes


def explore_router(
    keys: Sequence[str], router: str = "hash ring", nodes: int = 4, vnodes: int = 160
) -> Figure:
    """Keys per node for one router, titled with what adding a node would move.

    Computes the placement and the growth cost, then draws them with
    :func:`labkit.lab.plots.sharding.keys_per_node`.

    Args:
        keys: The keys to place.
        router: A label from :data:`ROUTER_KINDS`.
        nodes: Number of nodes (named ``node0`` ...).
        vnodes: Virtual nodes per node (hash ring only).
    """
    names = [f"node{i}" for i in range(nodes)]
    frac = growth_cost(router, nodes, keys, vnodes=vnodes)
    counts = load_spread(make_router(router, names, vnodes=vnodes), keys).counts
    return keys_per_node(
        {router: counts},
        title=f"{nodes} -> {nodes + 1} nodes moves {frac:.1%} "
        f"(ideal {1 / (nodes + 1):.1%})",
    )
