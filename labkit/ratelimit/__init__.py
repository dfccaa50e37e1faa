"""Library: rate limiters: five algorithms, one interface, one Lua call each."""

from labkit.ratelimit._algorithms import (
    GCRA,
    FixedWindow,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from labkit.ratelimit._base import MAX_PERIOD, Decision, Limiter, Rate

ALGORITHMS: dict[str, type[Limiter]] = {
    "fixed_window": FixedWindow,
    "sliding_log": SlidingLog,
    "sliding_window": SlidingWindow,
    "token_bucket": TokenBucket,
    "gcra": GCRA,
}

__all__ = [
    "ALGORITHMS",
    "GCRA",
    "MAX_PERIOD",
    "Decision",
    "FixedWindow",
    "Limiter",
    "Rate",
    "SlidingLog",
    "SlidingWindow",
    "TokenBucket",
]
