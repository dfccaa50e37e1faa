"""The shared test assertions themselves: they catch what they promise to catch."""

from __future__ import annotations

import pytest
import redis
from checks import assert_refused, audit_keys, documented_keys


class Owner:
    """A pattern that writes two keys.

    Keys:
        ``lab:demo:<name>:data`` (hash): the data; no TTL (configuration).
        ``lab:demo:<name>:seen`` (string): a marker; expires after ``ttl``.
    """


def test_documented_keys_parses_templates() -> None:
    """Placeholders match any text; descriptions run to the next key."""
    keys = documented_keys(Owner)
    assert [regex.pattern for regex, _ in keys] == [
        r"^lab:demo:.+:data$",
        r"^lab:demo:.+:seen$",
    ]
    assert "no TTL" in keys[0][1] and "no TTL" not in keys[1][1]


def test_audit_finds_undocumented_and_unexpiring_keys(r: redis.Redis) -> None:
    """A key nobody lists, or one without TTL not marked so, fails the audit."""
    r.hset("lab:demo:a:data", "f", 1)
    r.set("lab:demo:a:seen", 1, ex=60)
    assert set(audit_keys(r, Owner)) == {"lab:demo:a:data", "lab:demo:a:seen"}
    r.persist("lab:demo:a:seen")
    with pytest.raises(AssertionError, match="seen: has no TTL"):
        audit_keys(r, Owner)
    r.set("stray", 1, ex=60)
    with pytest.raises(AssertionError, match="stray: not listed"):
        audit_keys(r, Owner)


def test_assert_refused_catches_a_write_before_the_error(r: redis.Redis) -> None:
    """A call that writes and then raises does not pass as a clean refusal."""

    def writes_then_raises() -> None:
        r.set("half", "written")
        raise ValueError("x=1: must be 2")

    with pytest.raises(AssertionError, match="wrote to the database"):
        assert_refused(r, writes_then_raises, ValueError, "x=1")

    def refuses() -> None:
        raise ValueError("x=1: must be 2")

    assert isinstance(assert_refused(r, refuses, ValueError, "x=1"), ValueError)
