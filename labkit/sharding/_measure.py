"""How well a router spreads keys, and how many keys move when nodes change."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from labkit.sharding._routers import Router

__all__ = ["Spread", "load_spread", "moved_fraction", "sample_keys"]


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

    This is the share of data that must be copied when the cluster changes
    from ``before`` to ``after`` (or that goes missing if it is not copied).

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
