"""labkit.lab.caching.origin: a deterministic SQLite origin whose calls are counted."""

from __future__ import annotations

import threading

import pytest

from labkit.lab.caching import Origin, seed_sql


def test_seed_is_deterministic() -> None:
    """The same seed gives the same data; another seed gives other data."""
    assert seed_sql(5) == seed_sql(5)
    assert seed_sql(5) != seed_sql(6)
    a, b = Origin(0, seed=5), Origin(0, seed=5)
    assert a.list_users() == b.list_users()


def test_reads_and_writes() -> None:
    """Users, photos, posts, stars and weather can be read and written."""
    db = Origin(latency=0)
    users = db.list_users()
    assert len(users) == 50 and users[0]["id"] == 1
    uid = db.add_user("Lin", "lin@example.org")
    assert uid == 51 and db.get_user(uid) == {
        "id": 51,
        "name": "Lin",
        "email": "lin@example.org",
    }
    db.update_user(uid, name="Lin Q")
    assert db.get_user(uid)["name"] == "Lin Q"  # type: ignore[index]
    assert db.get_user(999) is None
    assert len(db.list_photos()) == 5000 and db.get_photo(7)["id"] == 7  # type: ignore[index]
    before = len(db.find_posts(3))
    db.add_post(3, "Hello", "redis")
    assert len(db.find_posts(3)) == before + 1
    assert all(p["tag"] == "redis" for p in db.find_posts(3, tag="redis"))
    stars = db.stars("redis/core")
    db.star("redis/core")
    assert db.stars("redis/core") == stars + 1  # type: ignore[operator]
    assert db.weather("Oslo")["city"] == "Oslo"  # type: ignore[index]
    db.close()


def test_calls_are_counted_across_threads() -> None:
    """Concurrent calls are all counted, per method."""
    db = Origin(latency=0.001)
    threads = [threading.Thread(target=db.get_user, args=(i,)) for i in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.list_users()
    assert db.calls["get_user"] == 16 and db.total_calls == 17
    db.reset_calls()
    assert db.total_calls == 0


@pytest.mark.parametrize("bad", [-1, "fast", True])
def test_bad_latency_is_named(bad: object) -> None:
    """A negative or non-numeric latency raises ValueError naming it."""
    with pytest.raises(ValueError, match="latency="):
        Origin(latency=bad)  # type: ignore[arg-type]
