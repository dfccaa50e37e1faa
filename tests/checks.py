"""Assertions shared by the pattern tests: bad input refused cleanly, keys listed.

Import them in a test module with ``from checks import assert_refused, audit_keys``
(pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar, overload

import pytest
import redis

from labkit.server import Server

__all__ = [
    "as_str",
    "assert_refused",
    "audit_keys",
    "documented_keys",
    "pid_of",
    "snapshot",
]


def as_str(reply: object) -> str:
    """A reply of a ``decode_responses=True`` client, typed as the str it is.

    redis-py types replies as ``bytes | str`` (or ``None``); this narrows one
    and fails loudly if the key was missing or the client returns bytes.
    """
    assert isinstance(reply, str), f"expected a str reply, got {reply!r}"
    return reply


def pid_of(server: Server) -> int:
    """The process id of a running ``server`` (for ``os.kill``)."""
    pid = server.pid
    assert pid is not None, f"{server!r} is not running"
    return pid


def snapshot(client: redis.Redis) -> dict[str, str]:
    """Every key of the client's database and its type (small test databases)."""
    return {str(k): str(client.type(k)) for k in client.scan_iter(count=1000)}


E = TypeVar("E", bound=BaseException)


@overload
def assert_refused(
    client: redis.Redis, call: Callable[[], Any], error: type[E], *words: str
) -> E: ...


@overload
def assert_refused(
    client: redis.Redis,
    call: Callable[[], Any],
    error: tuple[type[BaseException], ...],
    *words: str,
) -> BaseException: ...


def assert_refused(
    client: redis.Redis,
    call: Callable[[], Any],
    error: type[BaseException] | tuple[type[BaseException], ...],
    *words: str,
) -> BaseException:
    """``call()`` raises ``error`` naming ``words``, having written nothing.

    No timing is asserted: a refusal that hangs is caught by pytest-timeout.

    Args:
        client: The database to watch; its keys and their types must be the
            same after the call as before (DBSIZE and TYPE unchanged).
        call: The bad call, e.g. ``lambda: Cache(r, "users", ttl=math.nan)``.
        error: The exception type(s) expected: ValueError, TypeError or a
            labkit error.
        words: Fragments the message must contain: the argument's name and
            value (``"ttl=nan"``) and what is allowed.

    Returns:
        The exception, for further checks.
    """
    before = snapshot(client)
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"message {message!r} does not mention {missing!r}"
    assert snapshot(client) == before, "the refused call wrote to the database"
    return info.value


_KEY = re.compile(r"``([^`]+)``")


def documented_keys(owner: type | Any) -> list[tuple[re.Pattern[str], str]]:
    """The keys an owner's docstring lists, as (regex, description) pairs.

    Convention: the class docstring has a ``Keys:`` section; each key is a
    double-backticked template in which ``<placeholder>`` stands for any
    text, e.g. ````labkit:flags:<namespace>`` (hash): the flags; no TTL
    (configuration)``. A key's description runs to the next template. A key
    that is never given an expiry says ``no TTL`` in its description, with the
    reason or the bound that keeps it small (MAXLEN, max points...).
    """
    doc = inspect.getdoc(owner) or ""
    match = re.search(r"^Keys\b[^\n]*:", doc, re.M)
    if not match:
        return []
    section = doc[match.start() :]
    end = re.search(r"\n\S[^\n]*:\n|\n\n(?=\S)", section[match.end() - match.start() :])
    if end:
        section = section[: match.end() - match.start() + end.start()]
    found = list(_KEY.finditer(section))
    out = []
    for i, m in enumerate(found):
        template = m.group(1)
        if ":" not in template and "<" not in template:
            continue  # a type or a command in backticks, not a key
        stop = found[i + 1].start() if i + 1 < len(found) else len(section)
        parts = re.split(r"(<[^>]+>)", template)
        regex = "".join(".+" if p.startswith("<") else re.escape(p) for p in parts)
        out.append((re.compile(f"^{regex}$"), section[m.end() : stop]))
    return out


def audit_keys(client: redis.Redis, *owners: type | Any) -> dict[str, str]:
    """Every key in the database is documented by an owner; keys without TTL say so.

    Run it after a normal run of the owners' patterns. Fails on a key that no
    owner's docstring lists, and on a key with no TTL whose description does
    not say ``no TTL`` (with its reason or bound).

    Returns:
        ``{key: matching template description}``, for further checks.
    """
    documented = [entry for owner in owners for entry in documented_keys(owner)]
    assert documented, f"no Keys: section found in {owners!r}"
    seen: dict[str, str] = {}
    problems = []
    for raw in client.scan_iter(count=1000):
        key = str(raw)
        matches = [desc for regex, desc in documented if regex.match(key)]
        if not matches:
            problems.append(f"{key}: not listed in any Keys: section")
            continue
        seen[key] = matches[0]
        if client.ttl(key) == -1 and not any("no TTL" in d for d in matches):
            problems.append(f"{key}: has no TTL, but its description does not say so")
    assert not problems, "\n".join(problems)
    return seen
