"""labkit.lab.sharding.shortener: the tutorial's URL shortener over real servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial

import pytest

from labkit.lab.sharding import make_router
from labkit.lab.sharding.shortener import Resolution, Shortener, grow
from labkit.server import Server
from labkit.sharding import (
    HashRing,
    JumpHash,
    ModuloRouter,
    Rendezvous,
    ShardedClient,
    char_sum,
    move_keys,
)

NAMES = ["redis-a", "redis-b", "redis-c", "redis-d"]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    """Four embedded servers (the fourth joins later)."""
    with ExitStack() as stack:
        yield {n: stack.enter_context(Server()) for n in NAMES}


@pytest.fixture
def clients(servers: dict[str, Server]) -> Iterator[dict]:
    """A flushed client per server."""
    out = {name: s.client() for name, s in servers.items()}
    for c in out.values():
        c.flushdb()
    yield out
    for c in out.values():
        c.close()


def tutorial(clients: dict) -> Shortener:
    """The tutorial's placement: character sum modulo three servers."""
    router = ModuloRouter(NAMES[:3], hash=char_sum)
    return Shortener(ShardedClient({n: clients[n] for n in NAMES[:3]}, router))


def test_shorten_and_resolve(clients: dict) -> None:
    """A code redirects to its URL with a one-hour TTL; an unknown code is 404."""
    short = tutorial(clients)
    code = short.shorten("https://example.com/a/long/path")
    assert len(code) == 7 and code.isalnum()
    assert short.resolve(code) == Resolution(302, "https://example.com/a/long/path")
    assert short.resolve("nope123") == Resolution(404, None)
    assert 3590 < short.client.ttl(short.url_key(code)) <= 3600


def test_same_url_same_code_and_counters(clients: dict) -> None:
    """Shortening twice gives one code; hits and misses are counted."""
    short = tutorial(clients)
    urls = [f"https://example.com/{i}" for i in range(60)]
    codes = [short.shorten(u) for u in urls]
    assert codes == [short.shorten(u) for u in urls] and len(set(codes)) == 60
    for code in codes[:40]:
        short.resolve(code)
    for i in range(5):
        short.resolve(f"missing{i}")
    assert tuple(short.stats()) == (45, 40, 5)
    assert sum(short.links_per_server().values()) == 60
    assert all(n > 5 for n in short.links_per_server().values())


def test_links_expire(clients: dict) -> None:
    """A link shortened with ttl=1 answers 404 after it expires."""
    short = tutorial(clients)
    code = short.shorten("https://example.com/brief", ttl=1)
    assert short.resolve(code).status == 302
    time.sleep(1.2)
    assert short.resolve(code) == Resolution(404, None)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda s: s.shorten("ftp://x"), "url='ftp://x'"),
        (lambda s: s.shorten("https://x", ttl=0), "ttl=0"),
        (lambda s: Shortener(s.client, ttl=-5), "ttl=-5"),
        (lambda s: Shortener(s.client, length=2), "length=2"),
    ],
)
def test_bad_input(clients: dict, make, match: str) -> None:
    """Bad URLs, TTLs and code lengths raise ValueError naming the value."""
    with pytest.raises(ValueError, match=match):
        make(tutorial(clients))


def test_anagram_codes_share_a_server(clients: dict) -> None:
    """The character sum sends every anagram of a code to the same server."""
    router = tutorial(clients).client.router
    assert len({router.node_for(c) for c in ["abc1234", "4321cba", "c1b2a34"]}) == 1


@pytest.mark.parametrize(
    ("router", "low", "high"),
    [
        (lambda n: ModuloRouter(n, hash=char_sum), 0.65, 0.85),
        (lambda n: HashRing(n), 0.17, 0.33),
        (lambda n: Rendezvous(n), 0.17, 0.33),
        (lambda n: JumpHash(n), 0.17, 0.33),
    ],
)
def test_adding_a_fourth_server(clients: dict, router, low: float, high: float) -> None:
    """Links break on the new layout until moved; after move_keys all resolve."""
    three = ShardedClient({n: clients[n] for n in NAMES[:3]}, router(NAMES[:3]))
    four = ShardedClient(clients, router(NAMES))
    before = Shortener(three)
    codes = [before.shorten(f"https://example.com/p/{i}") for i in range(1000)]
    after = before.with_client(four)
    broken = sum(after.resolve(c).status == 404 for c in codes)
    report = move_keys(three, four, match=before.url_pattern)
    print(f"{four.router!r}: {broken} of 1000 links broke; moved {report.moved}")
    assert report.moved == broken and low < broken / 1000 < high
    assert all(after.resolve(c).status == 302 for c in codes)


@pytest.mark.parametrize(
    ("kind", "low", "high"), [("modulo", 0.65, 0.85), ("jump hash", 0.17, 0.33)]
)
def test_grow_counts_and_repairs(
    clients: dict, kind: str, low: float, high: float
) -> None:
    """grow: broken links are exactly the moved ones, and all resolve afterwards."""
    urls = [f"https://example.com/g/{i}" for i in range(500)]
    g = grow(clients, partial(make_router, kind), urls, nodes_before=3)
    assert g.broken == g.moved and g.all_resolve and low < g.broken / 500 < high


@pytest.mark.parametrize("nodes_before", [0, 4, "3"])
def test_grow_bad_nodes_before(clients: dict, nodes_before) -> None:
    """nodes_before must leave at least one server to add."""
    with pytest.raises(ValueError, match="nodes_before="):
        grow(clients, HashRing, ["https://a.example"], nodes_before=nodes_before)
