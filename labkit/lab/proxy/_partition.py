"""``Partition``: cut a named set of proxies at once, heal them at once."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

from labkit.lab.proxy._proxy import DirectionArg, Proxy

__all__ = ["Partition"]


class Partition:
    """Several proxies cut and healed together, as one network partition.

    Args:
        proxies: The proxies to cut, by name (``{"to primary": px}``), or an
            iterable of proxies (named ``proxy0``, ``proxy1``...). A proxy
            given twice is cut once.

    Cutting is :meth:`Proxy.blackhole` on each proxy; healing is
    :meth:`Proxy.heal` on each, which also clears any latency or bandwidth
    cap set on them. Use :meth:`between` to say the partition by sides and
    let it pick the proxies. As a context manager it cuts on entry and
    heals on exit, even when the block raises.

    Example:
        >>> links = {("replica", "primary"): to_primary,
        ...          ("sentinel", "primary"): to_primary,
        ...          ("sentinel", "replica"): to_replica}
        >>> with Partition.between({"primary", "client"}, {"replica", "sentinel"},
        ...                        links):
        ...     ...  # the client writes to an isolated primary
    """

    def __init__(self, proxies: Mapping[str, Proxy] | Iterable[Proxy]) -> None:
        named = (
            dict(proxies)
            if isinstance(proxies, Mapping)
            else {f"proxy{i}": p for i, p in enumerate(proxies)}
        )
        self.proxies: dict[str, Proxy] = {}
        seen: set[int] = set()
        for name, proxy in named.items():
            if not isinstance(proxy, Proxy):
                raise TypeError(f"proxies[{name!r}]={proxy!r}: expected a Proxy")
            if id(proxy) not in seen:
                seen.add(id(proxy))
                self.proxies[name] = proxy
        if not self.proxies:
            raise ValueError("proxies is empty: a partition needs a proxy to cut")
        self.cut_at: float | None = None
        self.healed_at: float | None = None

    @classmethod
    def between(
        cls,
        side_a: Iterable[str],
        side_b: Iterable[str],
        links: Mapping[tuple[str, str], Proxy],
    ) -> Partition:
        """The partition that separates ``side_a`` from ``side_b``.

        Args:
            side_a: Node names on one side (e.g. ``{"primary", "client"}``).
            side_b: Node names on the other.
            links: ``(from_node, to_node) -> proxy`` for every proxied link;
                a link between two nodes on one side is left alone, a link
                across is cut. Links that bypass proxies are not listed.

        Raises:
            ValueError: The sides overlap, a link names a node on neither
                side, no link crosses, or one proxy carries both a link that
                crosses and one that does not (it cannot be cut for one and
                not the other: give those links proxies of their own).
        """
        a, b = set(side_a), set(side_b)
        if a & b:
            raise ValueError(f"side_a and side_b share {sorted(a & b)}")
        crossing: dict[int, list[str]] = {}
        inside: dict[int, list[str]] = {}
        by_id: dict[int, Proxy] = {}
        for (src, dst), proxy in links.items():
            for node in (src, dst):
                if node not in a | b:
                    raise ValueError(
                        f"link {src}->{dst}: {node!r} is on neither side "
                        f"(side_a={sorted(a)}, side_b={sorted(b)})"
                    )
            by_id[id(proxy)] = proxy
            across = (src in a) != (dst in a)
            (crossing if across else inside).setdefault(id(proxy), []).append(
                f"{src}->{dst}"
            )
        for key in crossing.keys() & inside.keys():
            raise ValueError(
                f"one proxy carries {', '.join(crossing[key])} across the partition "
                f"and {', '.join(inside[key])} within one side; give those links "
                "proxies of their own"
            )
        if not crossing:
            raise ValueError(f"no link in {sorted(links)} crosses the partition")
        return cls({", ".join(names): by_id[key] for key, names in crossing.items()})

    @property
    def is_cut(self) -> bool:
        """True between :meth:`cut` and :meth:`heal`."""
        return self.cut_at is not None and (
            self.healed_at is None or self.healed_at < self.cut_at
        )

    def cut(self, *, direction: DirectionArg = "both") -> None:
        """Black-hole every proxy of the partition (see :meth:`Proxy.blackhole`)."""
        for proxy in self.proxies.values():
            proxy.blackhole(direction=direction)
        self.cut_at = time.perf_counter()

    def heal(self) -> None:
        """Heal every proxy of the partition; held bytes flow on, in order."""
        for proxy in self.proxies.values():
            proxy.heal()
        self.healed_at = time.perf_counter()

    def __repr__(self) -> str:
        state = "cut" if self.is_cut else "healed" if self.cut_at else "not cut"
        return f"<Partition {state}: {', '.join(self.proxies)}>"

    def __enter__(self) -> Self:
        self.cut()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.heal()
