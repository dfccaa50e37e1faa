"""The five limiters: same interface, different memory of the past."""

from __future__ import annotations

from labkit.ratelimit._base import Limiter

__all__ = ["GCRA", "FixedWindow", "SlidingLog", "SlidingWindow", "TokenBucket"]


class FixedWindow(Limiter):
    """At most ``limit`` units per window of ``period`` seconds.

    A window opens with the first request after the previous one closed. Cheap
    (one small hash per key) but coarse: a client can spend its whole limit at
    the end of one window and again at the start of the next, so up to
    ``2 * limit - 1`` units get through in one period around a window edge
    (the window's first unit opened it, so it is a period before the edge).

    Keys: ``<prefix>:<key>``, a hash ``{w: window start (us), n: units used}``,
    expiring when the window closes.
    """

    _script_name = "fixed_window"
    _default_prefix = "lab:ratelimit:fixed"


class SlidingLog(Limiter):
    """At most ``limit`` units in any interval of ``period`` seconds, exactly.

    Remembers the time of every admitted unit in a sorted set, so memory grows
    with the limit (one entry per unit: see MEMORY USAGE); exact, and the
    reference the others approximate.

    Keys: ``<prefix>:<key>``, a sorted set of admission times (score, us),
    expiring ``period`` after the last admission.
    """

    _script_name = "sliding_log"
    _default_prefix = "lab:ratelimit:log"


class SlidingWindow(Limiter):
    """About ``limit`` units per sliding ``period``, from two window counters.

    Windows are aligned on multiples of ``period``; the estimate of the last
    ``period`` is this window's count plus the previous window's count weighted
    by the share of the previous window still inside the sliding period. It
    assumes the previous window's requests were spread evenly, so it can be
    off either way, but never by the fixed window's 2x; memory is constant.

    Keys: ``<prefix>:<key>``, a hash ``{w: window index, c: this window's units,
    p: previous window's units}``, expiring when ``c`` stops counting.
    """

    _script_name = "sliding_window"
    _default_prefix = "lab:ratelimit:sliding"


class TokenBucket(Limiter):
    """A bucket of ``burst`` tokens refilled at ``limit`` per ``period``.

    A request takes ``cost`` tokens if the bucket has them. ``burst`` (default
    ``limit``) is the bucket's capacity: how many requests an idle client may
    send back to back; after that, requests get through at the refill rate.
    A missing key is a full bucket.

    Keys: ``<prefix>:<key>``, a hash ``{t: tokens (float), ts: time of t (us)}``,
    expiring when the bucket would be full again.
    """

    _script_name = "token_bucket"
    _default_prefix = "lab:ratelimit:bucket"
    _has_burst = True


class GCRA(Limiter):
    """Generic cell rate algorithm: a token bucket kept as one timestamp.

    Requests are spaced ``period / limit`` seconds apart on average; ``burst``
    (default ``limit``) is how many may come back to back on an idle key
    before that spacing is enforced. So ``GCRA(limit=10, period=60, burst=1)``
    admits one request every 6 s and no burst, while the default admits 10 at
    once, then one every 6 s. Decisions equal :class:`TokenBucket`'s for the
    same arguments; the state is one string instead of a two-field hash.

    Keys: ``<prefix>:<key>``, a string holding the theoretical arrival time
    (us since the epoch), expiring when that time is reached.
    """

    _script_name = "gcra"
    _default_prefix = "lab:ratelimit:gcra"
    _has_burst = True
