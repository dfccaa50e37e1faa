"""Lab: rate-limit experiments: the tutorials' limiters, trace replay, contention."""

from labkit.lab.ratelimit.contention import NAIVE, Contention
from labkit.lab.ratelimit.naive import (
    TutorialWindow,
    get_then_incr,
    incr_refresh_expire,
)
from labkit.lab.ratelimit.simulate import (
    admitted_per_period,
    compare,
    peak,
    simulate,
    traffic,
)

__all__ = [
    "NAIVE",
    "Contention",
    "TutorialWindow",
    "admitted_per_period",
    "compare",
    "get_then_incr",
    "incr_refresh_expire",
    "peak",
    "simulate",
    "traffic",
]
