"""The five limiters: same interface, different memory of the past."""

from __future__ import annotations

from labkit.core.scripts import Script
from labkit.ratelimit._base import Limiter

__all__ = ["GCRA", "FixedWindow", "SlidingLog", "SlidingWindow", "TokenBucket"]


class FixedWindow(Limiter):
    """At most ``limit`` units per window of ``period`` seconds.

    A window opens with the first request after the previous one closed. Cheap
    (one small hash per key) but coarse: a client can spend its whole limit at
    the end of one window and again at the start of the next, so up to
    ``2 * limit - 1`` units get through in one period around a window edge
    (the window's first unit opened it, so it is a period before the edge).

    Keys:
        ``<prefix>:<key>`` (hash, fields `w` and `n`): the window's start (us)
        and the units it admitted; expires when the window closes.
    """

    script = Script("ratelimit_fixed_window")
    _default_prefix = "labkit:ratelimit:fixed"
    _redis_type = "hash"
    _state = "a hash of w (window start) and n (units used)"


class SlidingLog(Limiter):
    """At most ``limit`` units in any interval of ``period`` seconds, exactly.

    Remembers the time of every admitted unit in a sorted set, so memory grows
    with the limit (one entry per unit: see MEMORY USAGE); exact, and the
    reference the others approximate.

    Keys:
        ``<prefix>:<key>`` (sorted set): one member per admitted unit, scored
        by its admission time (us); at most `limit` members, and it expires
        `period` after the last admission.
    """

    script = Script("ratelimit_sliding_log")
    _default_prefix = "labkit:ratelimit:log"
    _redis_type = "zset"
    _state = "a sorted set of admission times"


class SlidingWindow(Limiter):
    """About ``limit`` units per sliding ``period``, from two window counters.

    Windows are aligned on multiples of ``period``; the estimate of the last
    ``period`` is this window's count plus the previous window's count weighted
    by the share of the previous window still inside the sliding period. The
    weighting assumes the previous window's units were spread evenly over it.
    On smooth traffic that is nearly true and the estimate is close to the
    sliding log's exact count; on bunched traffic it can be off either way.
    Its worst case is the fixed window's: ``limit`` units at the very end of
    one window weigh less and less as the next window goes on, so a steady
    trickle then gets ``limit - 1`` more through before that window ends,
    ``2 * limit - 1`` in one period. Memory is constant.

    Keys:
        ``<prefix>:<key>`` (hash, fields `w`, `c`, `p`): the window index and
        the units of this window and the previous one; expires when this
        window's count no longer weighs (two periods at most).
    """

    script = Script("ratelimit_sliding_window")
    _default_prefix = "labkit:ratelimit:sliding"
    _redis_type = "hash"
    _state = "a hash of w (window index), c and p (units this and last window)"


class TokenBucket(Limiter):
    """A bucket of ``burst`` tokens refilled at ``limit`` per ``period``.

    A request takes ``cost`` tokens if the bucket has them. ``burst`` (default
    ``limit``) is the bucket's capacity: how many requests an idle client may
    send back to back; after that, requests get through at the refill rate,
    so at most ``limit + burst - 1`` units go through in one period.
    A missing key is a full bucket.

    Keys:
        ``<prefix>:<key>`` (hash, fields `t` and `ts`): the tokens left (a
        float) and when they were counted (us); expires when the bucket would
        be full again.
    """

    script = Script("ratelimit_token_bucket")
    _default_prefix = "labkit:ratelimit:bucket"
    _has_burst = True
    _redis_type = "hash"
    _state = "a hash of t (tokens) and ts (when)"


class GCRA(Limiter):
    """Generic cell rate algorithm: a token bucket kept as one timestamp.

    Requests are spaced ``period / limit`` seconds apart on average; ``burst``
    (default ``limit``) is how many may come back to back on an idle key
    before that spacing is enforced. So ``GCRA(limit=10, period=60, burst=1)``
    admits one request every 6 s and no burst, while the default admits 10 at
    once, then one every 6 s: at most ``limit + burst - 1`` in one period.
    Decisions equal :class:`TokenBucket`'s for the same arguments; the state
    is one string instead of a two-field hash.

    Keys:
        ``<prefix>:<key>`` (string): the theoretical arrival time (TAT, us
        since the epoch); expires when that time is reached.
    """

    script = Script("ratelimit_gcra")
    _default_prefix = "labkit:ratelimit:gcra"
    _has_burst = True
    _redis_type = "string"
    _state = "a string holding the theoretical arrival time"
