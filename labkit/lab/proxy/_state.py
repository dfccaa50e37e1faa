"""What a proxy's network does and what it counted (shared by both threads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

__all__ = [
    "DIRECTIONS",
    "Counters",
    "Direction",
    "Knobs",
    "Network",
    "ProxyEvent",
    "ProxyStats",
]

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, ...] = ("up", "down")


@dataclass
class Knobs:
    """What the network does to one direction. Only the proxy thread writes it."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth: float | None = None  # bytes per second; None = no cap
    held: bool = False  # black hole: nothing is read or delivered

    def clear(self) -> None:
        """Back to a perfect network."""
        self.delay_s = self.jitter_s = 0.0
        self.bandwidth = None
        self.held = False

    @property
    def plain(self) -> bool:
        """True when bytes may go straight through (the zero-overhead path)."""
        return not self.held and self.delay_s == 0 and self.bandwidth is None


@dataclass
class Network:
    """Both directions' knobs, and whether new connections are refused."""

    knobs: dict[Direction, Knobs] = field(
        default_factory=lambda: {"up": Knobs(), "down": Knobs()}
    )
    refusing: bool = False


@dataclass
class Counters:
    """Running totals, written by the proxy thread, read by anyone."""

    bytes: dict[Direction, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    connections: int = 0
    open: int = 0
    refused: int = 0
    resets: int = 0
    upstream_failures: int = 0
    last_upstream_error: str = ""


class ProxyStats(NamedTuple):
    """A proxy's counters since it was created.

    Attributes:
        bytes_up: Bytes delivered from clients to the upstream server.
        bytes_down: Bytes delivered from the upstream server to clients.
        connections: Client connections accepted (refused ones included).
        open_connections: Connections open now.
        refused: Connections closed at once because of :meth:`Proxy.refuse`.
        resets: Connections reset by :meth:`Proxy.reset`.
        upstream_failures: Connections reset because upstream did not accept.
        set_at: For each knob (``latency_up``, ``bandwidth_down``,
            ``blackhole_up``, ``refuse``, ``reset``, ``heal``...), the
            ``time.perf_counter()`` at which it was last set.
    """

    bytes_up: int
    bytes_down: int
    connections: int
    open_connections: int
    refused: int
    resets: int
    upstream_failures: int
    set_at: dict[str, float]


class ProxyEvent(NamedTuple):
    """One knob change: ``at`` (``time.perf_counter()``), ``knob``, ``value``."""

    at: float
    knob: str
    value: str
