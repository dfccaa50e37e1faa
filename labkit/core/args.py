"""Argument checks: one place, one wording, raised before anything is written.

Every check returns the value (converted where that is the point, e.g. seconds
to float) or raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right
kind, out of range) with a message that names the argument, repeats the value
and says what is allowed: ``"ttl=nan: must be a finite number of seconds from
0.001 to 31536000"``.

Rules applied everywhere: ``bool`` is not a number; NaN and infinities are not
finite numbers; every number has an upper bound (a limit of 2**63 or a TTL of a
thousand years is a mistake, not a wish); a ``str`` is not an iterable of
names; names and keys are non-empty.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = [
    "DAY",
    "MAX_COUNT",
    "YEAR",
    "Key",
    "check_callable",
    "check_choice",
    "check_count",
    "check_int",
    "check_key",
    "check_name",
    "check_names",
    "check_number",
    "check_seconds",
    "check_tag",
    "renamed",
]

#: Seconds in a day and in a (365-day) year: handy upper bounds for durations.
DAY = 86_400
YEAR = 365 * DAY
#: Default upper bound for counts (limits, sizes, attempts): 2**31 - 1, far
#: below where Lua's doubles or Redis's 64-bit integers would misbehave.
MAX_COUNT = 2**31 - 1

#: What a pattern takes as an item key (a rate-limited client, a cached item,
#: a fan-out part): a non-empty ``str``, or an ``int`` turned into one. Not
#: ``bytes``: the key is a part of a name labkit builds (``prefix:key``), and
#: ``f"{b'id'}"`` would write ``b'id'``. Whole Redis key names that are passed
#: through unchanged (``ShardedClient``) are ``str | bytes`` instead.
Key = str | int

T = TypeVar("T")
_F = TypeVar("_F", bound=Callable[..., Any])


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show(value: Any) -> str:
    """``repr(value)``, a huge int shortened (10**400 has 401 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        digits = len(str(abs(value)))
        return f"{'-' if value < 0 else ''}{str(abs(value))[:6]}...({digits} digits)"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def check_int(
    name: str, value: Any, *, min: int = 1, max: int = MAX_COUNT, what: str = "an int"
) -> int:
    """An ``int`` (not a bool) from ``min`` to ``max``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={_show(value)}: must be {what} from {min} to {max}")
    if not min <= value <= max:
        raise ValueError(f"{name}={_show(value)}: must be {what} from {min} to {max}")
    return value


def check_count(name: str, value: Any, *, max: int = MAX_COUNT) -> int:
    """A whole count >= 1 (a limit, a size, a number of attempts)."""
    return check_int(name, value, min=1, max=max)


def check_number(
    name: str,
    value: Any,
    *,
    min: float,
    max: float,
    min_open: bool = False,
    unit: str = "",
) -> float:
    """A finite ``int``/``float`` (not a bool) in [min, max] (or (min, max]).

    Args:
        name: The argument's name, for the message.
        value: What the caller passed.
        min, max: The allowed range.
        min_open: Exclude ``min`` itself (``> 0`` rather than ``>= 0``).
        unit: Words after "number", e.g. ``"of seconds"``.
    """
    kind = f"a finite number{' ' + unit if unit else ''}"
    lower = f"> {_fmt(min)}" if min_open else f"from {_fmt(min)}"
    allowed = f"{kind} {lower} {'and <=' if min_open else 'to'} {_fmt(max)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}={_show(value)}: must be {allowed}")
    # An int is always finite, and math.isfinite(10**400) would raise
    # OverflowError naming no argument: compare ints as they are.
    finite = isinstance(value, int) or math.isfinite(value)
    ok = finite and (value > min if min_open else value >= min)
    if not ok or value > max:
        raise ValueError(f"{name}={_show(value)}: must be {allowed}")
    return float(value)


def check_seconds(
    name: str,
    value: Any,
    *,
    min: float = 0.0,
    max: float = YEAR,
    min_open: bool = True,
) -> float:
    """A duration in seconds: finite, > ``min`` (or >= with ``min_open=False``)."""
    return check_number(
        name, value, min=min, max=max, min_open=min_open, unit="of seconds"
    )


def check_name(name: str, value: Any, *, max_len: int = 512) -> str:
    """A non-empty ``str`` of at most ``max_len`` characters, without newlines."""
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r}: must be a non-empty str")
    if not value or len(value) > max_len or "\n" in value or "\r" in value:
        raise ValueError(
            f"{name}={value!r}: must be a non-empty str of at most {max_len} "
            "characters, without line breaks"
        )
    return value


def check_key(name: str, value: Any) -> str:
    """A request/item key (:data:`Key`): a non-empty ``str``, or an ``int``
    (turned into str)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"{name}={value!r}: must be a non-empty str (or an int)")
    text = str(value)
    if not text:
        raise ValueError(f"{name}={value!r}: must be a non-empty str (or an int)")
    return text


def check_tag(name: str, value: Any) -> str:
    """A value placed inside a ``{hash tag}``: non-empty, without braces.

    Redis Cluster hashes only what is between the first ``{`` and the next
    ``}``, and only if that is non-empty. An empty value (``{}``) or one with a
    brace (``{}x}``) silently breaks the tag, so the keys of one multi-key
    operation land in different slots.
    """
    text = check_key(name, value)
    if "{" in text or "}" in text:
        raise ValueError(
            f"{name}={value!r}: must not contain '{{' or '}}' (it becomes a "
            "cluster hash tag, which braces would break)"
        )
    return text


def check_names(name: str, value: Any, *, min_len: int = 1) -> list[str]:
    """A list of non-empty strs; a bare ``str`` is refused, not split into letters."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name}={value!r}: must be a list of names (a bare str is one name: "
            f"write [{value!r}])"
        )
    items = list(value)
    if len(items) < min_len:
        raise ValueError(f"{name}={items!r}: need at least {min_len} name(s)")
    for item in items:
        check_name(f"{name} item", item)
    return items


def check_callable(name: str, value: _F, *, signature: str = "") -> _F:
    """A callable; ``signature`` describes what it is called with, for the message."""
    if not callable(value):
        hint = f" ({signature})" if signature else ""
        raise TypeError(f"{name}={value!r}: must be callable{hint}")
    return value


def check_choice(name: str, value: T, choices: Iterable[T]) -> T:
    """One of ``choices``."""
    options = list(choices)
    if value not in options:
        raise ValueError(f"{name}={value!r}: must be one of {options!r}")
    return value


def renamed(
    owner: str,
    old: str,
    old_value: T | None,
    new: str,
    new_value: T | None,
    *,
    category: type[DeprecationWarning | PendingDeprecationWarning] = (
        DeprecationWarning
    ),
) -> T | None:
    """The value of a keyword renamed from ``old`` to ``new``.

    Passing ``old`` still works, with a warning of ``category`` pointing at
    the caller of ``owner`` (``stacklevel=3``); passing both is a
    ``TypeError``. Returns whichever was given (None if neither).

    ``PendingDeprecationWarning`` is the first step of a rename: Python and
    Jupyter show it nowhere by default (pytest does), so code that still uses
    the old name prints nothing new until the rename becomes a
    ``DeprecationWarning`` (shown for code run as ``__main__``, as a
    notebook cell is).
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"{owner}: pass {new}= only ({old}= is its old name)")
    warnings.warn(
        f"{owner}({old}=...) is deprecated; use {new}=...",
        category,
        stacklevel=3,
    )
    return old_value
