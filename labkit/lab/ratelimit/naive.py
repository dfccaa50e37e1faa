"""Lab: the tutorials' limiters, reproduced to measure what goes wrong with them.

Do not use these: they are here so that notebook 03a and the tests can run them
into their failures (the notebook writes its own copies inline, to show them;
the contention workers import these). Each takes the client first and the
caller's key as is.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from labkit.core.args import YEAR, check_count, check_int
from labkit.core.scripts import Script

__all__ = ["TutorialWindow", "get_then_incr", "incr_expire_nx", "incr_refresh_expire"]


class TutorialWindow:
    """The Node.js Lua limiter's "token bucket": really a fixed window (5 per 60 s).

    Atomic, so it admits exactly ``limit`` per window, but a window is a
    fixed slot that opens at its first request: ``limit - 1`` at a window's
    end plus ``limit`` at the next one's start is ``2 * limit - 1`` within a
    few milliseconds.
    """

    def __init__(self, client: redis.Redis, limit: int = 5, window: int = 60) -> None:
        self.client = client
        self.limit = check_count("limit", limit)
        self.window = check_int("window", window, min=1, max=YEAR)
        self._script = Script("ratelimit_tutorial_window", package="labkit.lab")

    def allow(self, key: str) -> bool:
        """True if the request is admitted (the tutorial answers 429 otherwise)."""
        return self._script(self.client, [key], [self.limit, self.window]) == 1


def incr_refresh_expire(client: redis.Redis, key: str, ttl: int = 2) -> str:
    """The intro tutorial's IP limiter: ``INCR`` then ``EXPIRE key ttl`` every time.

    Returns ``"ok"``, ``"about-to-rate-limit"`` (count > 10) or
    ``"rate-limited"`` (count > 15). The refreshed TTL means the counter only
    resets after ``ttl`` seconds of silence: a steady client is locked out for
    good once it crosses 15.
    """
    count = client.incr(key)
    client.expire(key, ttl)
    if count > 15:
        return "rate-limited"
    if count > 10:
        return "about-to-rate-limit"
    return "ok"


def incr_expire_nx(client: redis.Redis, key: str, ttl: int = 2) -> str:
    """:func:`incr_refresh_expire` with its one-line fix: ``EXPIRE ... NX``.

    ``NX`` sets the expiry only on a key that has none, i.e. on the first
    request of a window, and ``MULTI`` sends both commands as one, so a crash
    between them cannot leave a counter without a TTL. The lockout becomes a
    fixed window of ``ttl`` seconds (with a fixed window's edge burst).
    """
    pipe = client.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, ttl, nx=True)
    count, _ = pipe.execute()
    if count > 15:
        return "rate-limited"
    if count > 10:
        return "about-to-rate-limit"
    return "ok"


def get_then_incr(
    client: redis.Redis,
    key: str,
    limit: int,
    window: int,
    *,
    between: Callable[[], object] | None = None,
) -> bool:
    """The Lua limiter's logic as two commands from the client: ``GET``, ``INCR``.

    Between the ``GET`` and the ``INCR`` other clients can read the same
    count, so under concurrency more than ``limit`` requests get through.
    The ``EXPIRE`` is a third command after the first ``INCR``: a process
    that dies before it leaves a counter that never expires.

    Args:
        client: Any client of the server holding ``key``.
        key: The counter.
        limit: Requests allowed per window.
        window: The counter's expiry (whole seconds), set on its first ``INCR``.
        between: Optional function called after the ``GET`` and before the
            ``INCR``: lets a demo or test put another client's request exactly
            there, so the race happens every time instead of by chance.
    """
    count = int(client.get(key) or 0)
    if count >= limit:
        return False
    if between is not None:
        between()
    if client.incr(key) == 1:
        client.expire(key, window)
    return True
