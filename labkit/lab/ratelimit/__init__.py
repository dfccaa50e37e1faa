"""Lab: rate limiting: the tutorials' limiters, replay, search, contention, flags."""

from labkit.lab.ratelimit.contention import NAIVE, Contention
from labkit.lab.ratelimit.flags import propagation_ms
from labkit.lab.ratelimit.naive import (
    TutorialWindow,
    get_then_incr,
    incr_expire_nx,
    incr_refresh_expire,
)
from labkit.lab.ratelimit.search import WorstCase, worst_case
from labkit.lab.ratelimit.simulate import (
    ORIGIN,
    admitted_per_period,
    compare,
    peak,
    simulate,
    simulate_many,
    traffic,
)

__all__ = [
    "NAIVE",
    "ORIGIN",
    "Contention",
    "TutorialWindow",
    "WorstCase",
    "admitted_per_period",
    "compare",
    "get_then_incr",
    "incr_expire_nx",
    "incr_refresh_expire",
    "peak",
    "propagation_ms",
    "simulate",
    "simulate_many",
    "traffic",
    "worst_case",
]
