"""One bounded wait: poll a condition until it holds or a timeout passes."""

from __future__ import annotations

import time
from collections.abc import Callable

from labkit.core.args import DAY, check_seconds

__all__ = ["EXPIRY_GRACE", "wait_until"]

EXPIRY_GRACE = 0.002
"""Seconds a client allows past a TTL before it counts on the key being gone.

The server frees a key only after the last millisecond of its TTL (it checks
``now_ms > when`` in whole milliseconds), so a client that waits exactly one
TTL from when the key was set can still find it for up to a millisecond.
"""


def wait_until(
    condition: Callable[[], object], timeout: float = 5.0, *, interval: float = 0.01
) -> bool:
    """Poll ``condition()`` until it is true; False if ``timeout`` seconds passed.

    For conditions another thread or process makes true (a reconnect, a
    counter, a flag change): the wait is bounded, and the caller asserts on
    the answer instead of sleeping a fixed time and hoping.

    Raises:
        TypeError, ValueError: ``timeout`` or ``interval`` is not a finite
            number of seconds > 0 (at most a day).
    """
    check_seconds("timeout", timeout, max=DAY)
    check_seconds("interval", interval, max=60)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
