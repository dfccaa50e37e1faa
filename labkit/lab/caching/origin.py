"""Lab: a real, slow origin for the caching experiments: SQLite plus a latency.

The tutorials cache reads from Postgres, MongoDB, GitHub and a slow HTTP API.
:class:`Origin` stands in for all of them: a real SQLite database (users,
photos, blog posts, repositories with star counts, weather per city) whose every
call first sleeps ``latency`` seconds, the knob the notebooks turn to the
latencies the tutorials quote (150-200 ms, 409 ms, 900 ms, 1400 ms).

The seed data is generated deterministically by :func:`seed_sql`.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from typing import Any

__all__ = ["TUTORIAL_PHOTOS", "Origin", "seed_sql"]

_SCHEMA = """\
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
CREATE TABLE photos (id INTEGER PRIMARY KEY, album INTEGER NOT NULL,
  title TEXT NOT NULL, url TEXT NOT NULL, thumbnail_url TEXT NOT NULL);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
  title TEXT NOT NULL, tag TEXT NOT NULL, likes INTEGER NOT NULL);
CREATE TABLE repos (name TEXT PRIMARY KEY, stars INTEGER NOT NULL);
CREATE TABLE weather (city TEXT PRIMARY KEY, temp_c REAL NOT NULL, sky TEXT NOT NULL);
"""

_FIRST = ["Ada", "Alan", "Barbara", "Edsger", "Grace", "Ken", "Linus", "Margaret"]
_LAST = ["Hopper", "Knuth", "Liskov", "Lovelace", "Ritchie", "Thompson", "Turing"]
_WORDS = ["cache", "queue", "shard", "stream", "lock", "index", "replica", "eviction"]
_TAGS = ["redis", "python", "databases", "devops"]
_CITIES = ["Lima", "Oslo", "Paris", "Nairobi", "Osaka", "Quito", "Perth", "Cairo"]
_SKY = ["clear", "cloudy", "rain", "fog"]


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: Photos the photo tutorial's API serves (its list endpoint returns them all).
TUTORIAL_PHOTOS = 5000


def seed_sql(
    seed: int = 2024, *, users: int = 50, photos: int = TUTORIAL_PHOTOS
) -> str:
    """The origin's schema and rows as one SQL script, the same for the same seed.

    Args:
        seed: Seed of the ``random.Random`` that draws names, titles and counts.
        users: Number of users (each has 0-6 posts).
        photos: Number of photos (the tutorial's API serves 5000, each with an
            album, a title, a URL and a thumbnail URL, as here).
    """
    rng = random.Random(seed)
    out = [_SCHEMA]
    post_id = 0
    for uid in range(1, users + 1):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        email = f"{name.lower().replace(' ', '.')}{uid}@example.org"
        out.append(f"INSERT INTO users VALUES ({uid}, {_q(name)}, {_q(email)});")
        for _ in range(rng.randint(0, 6)):
            post_id += 1
            title = f"Notes on {rng.choice(_WORDS)} and {rng.choice(_WORDS)}"
            out.append(
                f"INSERT INTO posts VALUES ({post_id}, {uid}, {_q(title)}, "
                f"{_q(rng.choice(_TAGS))}, {rng.randint(0, 500)});"
            )
    for pid in range(1, photos + 1):
        title = " ".join(rng.choice(_WORDS) for _ in range(3))
        url = f"https://photos.example.org/600/{pid:06x}.jpg"
        thumb = f"https://photos.example.org/150/{pid:06x}.jpg"
        out.append(
            f"INSERT INTO photos VALUES ({pid}, {1 + (pid - 1) // 50}, {_q(title)}, "
            f"{_q(url)}, {_q(thumb)});"
        )
    for owner in ("redis", "valkey-io", "python"):
        for project in ("core", "docs", "client"):
            out.append(
                f"INSERT INTO repos VALUES ({_q(f'{owner}/{project}')}, "
                f"{rng.randint(10, 70000)});"
            )
    for city in _CITIES:
        out.append(
            f"INSERT INTO weather VALUES ({_q(city)}, "
            f"{rng.randint(-50, 350) / 10}, {_q(rng.choice(_SKY))});"
        )
    return "\n".join(out) + "\n"


class Origin:
    """A slow system of record: an in-memory SQLite database behind a delay.

    Args:
        latency: Seconds every call sleeps before it runs its query (>= 0). Set
            the attribute to change it later; ``latency_for`` overrides it per
            method name (``{"list_photos": 1.4}``).
        seed: Seed of the generated data (:func:`seed_sql`); ``None`` means
            the default seed, 2024.
        photos: Number of photos (default: the tutorial's 5000).

    Calls are thread-safe and overlap: the sleep happens outside the database
    lock, as it would with a connection pool, so N concurrent readers take
    about one ``latency``, not N. Every call is counted in :attr:`calls`
    (method name -> count), which is how the notebooks count origin hits.
    """

    def __init__(
        self,
        latency: float = 0.02,
        *,
        seed: int | None = None,
        photos: int = TUTORIAL_PHOTOS,
    ) -> None:
        self.latency = latency
        self.latency_for: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        script = seed_sql(2024 if seed is None else seed, photos=photos)
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(script)

    @property
    def latency(self) -> float:
        """Seconds added to every call."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"latency={value!r}: expected seconds as a number >= 0")
        self._latency = float(value)

    @property
    def total_calls(self) -> int:
        """Calls made so far, all methods together."""
        return sum(self.calls.values())

    def reset_calls(self) -> None:
        """Set every call counter back to zero."""
        with self._lock:
            self.calls.clear()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _run(
        self, method: str, sql: str, args: tuple[Any, ...] = ()
    ) -> list[dict[str, Any]]:
        return self._exec(method, sql, args)[0]

    def _exec(
        self, method: str, sql: str, args: tuple[Any, ...]
    ) -> tuple[list[dict[str, Any]], int]:
        time.sleep(self.latency_for.get(method, self._latency))
        with self._lock:
            self.calls[method] += 1
            cur = self._db.execute(sql, args)
            rows = [dict(row) for row in cur.fetchall()]
            self._db.commit()
            return rows, int(cur.lastrowid or 0)

    # --- users (tutorial 1: a users API on Postgres) ----------------------
    def list_users(self) -> list[dict[str, Any]]:
        """All users, by id."""
        return self._run("list_users", "SELECT * FROM users ORDER BY id")

    def get_user(self, user_id: int) -> dict[str, Any] | None:
        """One user, or None."""
        rows = self._run("get_user", "SELECT * FROM users WHERE id = ?", (user_id,))
        return rows[0] if rows else None

    def add_user(self, name: str, email: str) -> int:
        """Insert a user; returns its id."""
        sql = "INSERT INTO users (name, email) VALUES (?, ?)"
        return self._exec("add_user", sql, (name, email))[1]

    def update_user(self, user_id: int, *, name: str) -> None:
        """Rename a user."""
        sql = "UPDATE users SET name = ? WHERE id = ?"
        self._run("update_user", sql, (name, user_id))

    # --- photos (tutorial 2: a slow HTTP API) -----------------------------
    def list_photos(self) -> list[dict[str, Any]]:
        """All photos, by id."""
        return self._run("list_photos", "SELECT * FROM photos ORDER BY id")

    def get_photo(self, photo_id: int) -> dict[str, Any] | None:
        """One photo, or None."""
        rows = self._run("get_photo", "SELECT * FROM photos WHERE id = ?", (photo_id,))
        return rows[0] if rows else None

    # --- posts (tutorial 3: per-user query cache on MongoDB) ---------------
    def find_posts(
        self, user_id: int, *, tag: str | None = None, min_likes: int = 0
    ) -> list[dict[str, Any]]:
        """A user's posts, optionally filtered by tag and minimum likes."""
        sql = "SELECT * FROM posts WHERE user_id = ? AND likes >= ?"
        args: tuple[Any, ...] = (user_id, min_likes)
        if tag is not None:
            sql += " AND tag = ?"
            args += (tag,)
        return self._run("find_posts", sql + " ORDER BY id", args)

    def add_post(self, user_id: int, title: str, tag: str) -> int:
        """Insert a post with no likes; returns its id."""
        sql = "INSERT INTO posts (user_id, title, tag, likes) VALUES (?, ?, ?, 0)"
        return self._exec("add_post", sql, (user_id, title, tag))[1]

    # --- stars and weather (tutorials 4 and 5) -----------------------------
    def stars(self, repo: str) -> int | None:
        """A repository's star count, or None."""
        rows = self._run("stars", "SELECT stars FROM repos WHERE name = ?", (repo,))
        return int(rows[0]["stars"]) if rows else None

    def star(self, repo: str) -> None:
        """Add one star to a repository."""
        self._run("star", "UPDATE repos SET stars = stars + 1 WHERE name = ?", (repo,))

    def weather(self, city: str) -> dict[str, Any] | None:
        """Current weather of a city, or None."""
        rows = self._run("weather", "SELECT * FROM weather WHERE city = ?", (city,))
        return rows[0] if rows else None
