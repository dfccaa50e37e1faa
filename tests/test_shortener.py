"""labkit.lab.sharding.shortener: the tutorial's URL shortener over real servers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import pytest
import redis
from checks import assert_refused, audit_keys

import labkit
from labkit.errors import ShardUnavailableError, WrongTypeError
from labkit.lab.sharding import char_sum, make_router
from labkit.lab.sharding.shortener import Resolution, Shortener, check_url, grow
from labkit.server import Server, free_port, no_retry
from labkit.sharding import (
    HashRing,
    JumpHash,
    ModuloRouter,
    Rendezvous,
    Router,
    ShardedClient,
    move_keys,
)

NAMES = ["redis-a", "redis-b", "redis-c", "redis-d"]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    """Four embedded servers (the fourth joins later)."""
    with ExitStack() as stack:
        yield {n: stack.enter_context(Server()) for n in NAMES}


@pytest.fixture
def clients(servers: dict[str, Server]) -> Iterator[dict[str, redis.Redis]]:
    """A flushed client per server."""
    out = {name: s.client(socket_timeout=5) for name, s in servers.items()}
    for c in out.values():
        c.flushdb()
    yield out
    for c in out.values():
        c.close()


def tutorial(clients: dict[str, redis.Redis]) -> Shortener:
    """The tutorial's placement: character sum modulo three servers."""
    router = ModuloRouter(NAMES[:3], hash=char_sum)
    return Shortener(ShardedClient({n: clients[n] for n in NAMES[:3]}, router))


def test_shorten_and_resolve(clients: dict[str, redis.Redis]) -> None:
    """A code redirects to its URL with a one-hour TTL; an unknown code is 404."""
    short = tutorial(clients)
    code = short.shorten("https://example.com/a/long/path")
    assert len(code) == 7 and code.isalnum()
    assert short.resolve(code) == Resolution(302, "https://example.com/a/long/path")
    assert short.resolve("nope123") == Resolution(404, None)
    assert 3590 < short.client.ttl(short.url_key(code)) <= 3600


def test_same_url_same_code_and_counters(clients: dict[str, redis.Redis]) -> None:
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


def test_links_expire(clients: dict[str, redis.Redis]) -> None:
    """A link shortened with ttl=1 answers 404 after it expires."""
    short = tutorial(clients)
    code = short.shorten("https://example.com/brief", ttl=1)
    assert short.resolve(code).status == 302
    time.sleep(1.2)
    assert short.resolve(code) == Resolution(404, None)


def test_anagram_codes_share_a_server(clients: dict[str, redis.Redis]) -> None:
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
def test_adding_a_fourth_server(
    clients: dict[str, redis.Redis],
    router: Callable[[list[str]], Router],
    low: float,
    high: float,
) -> None:
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
    clients: dict[str, redis.Redis], kind: str, low: float, high: float
) -> None:
    """grow: broken links are exactly the moved ones, and all resolve afterwards."""
    urls = [f"https://example.com/g/{i}" for i in range(500)]
    g = grow(clients, partial(make_router, kind), urls, nodes_before=3)
    assert g.broken == g.moved and g.all_resolve and low < g.broken / 500 < high


@pytest.mark.parametrize("nodes_before", [0, 4, "3"])
def test_grow_bad_nodes_before(
    clients: dict[str, redis.Redis], nodes_before: Any
) -> None:
    """nodes_before must leave at least one server to add."""
    with pytest.raises(ValueError, match="nodes_before="):
        grow(clients, HashRing, ["https://a.example"], nodes_before=nodes_before)


# --- bad input, wrong-type keys, a server down, the keys audit ----------------
@pytest.fixture
def solo(redis_url: str, r: redis.Redis) -> Iterator[Shortener]:
    """A one-server shortener on the test database (so assert_refused sees it)."""
    client = labkit.connect(redis_url, socket_timeout=5)
    yield Shortener(ShardedClient({"only": client}, HashRing(["only"])))
    client.close()


URL = "https://example.com/ok"
BAD_URLS = [
    ("ftp://example.com/x", ValueError, "url='ftp://example.com/x'"),
    ("javascript:alert(1)", ValueError, "url='javascript:alert(1)'"),
    ("https://", ValueError, "url='https://'"),
    ("https:///no/host", ValueError, "url='https:///no/host'"),
    ("example.com/page", ValueError, "url='example.com/page'"),
    ("https://e.com/\r\nSet-Cookie: a=1", ValueError, "found '\\r'"),
    ("https://e.com/a\nb", ValueError, "found '\\n'"),
    ("https://e.com/\x00", ValueError, "found '\\x00'"),
    ("https://e.com/a b", ValueError, "found ' '"),
    ("https://e.com:99999/", ValueError, "url='https://e.com:99999/'"),
    ("https://e.com/" + "a" * 9000, ValueError, "at most 8192"),
    ("", ValueError, "url=''"),
    (b"https://e.com/", TypeError, "url=b'https://e.com/'"),
    (None, TypeError, "url=None"),
]


@pytest.mark.parametrize(("url", "error", "words"), BAD_URLS)
def test_bad_urls_are_refused(
    r: redis.Redis, solo: Shortener, url: Any, error: type[Exception], words: str
) -> None:
    """Schemes other than http(s), no host, CR/LF and control characters: refused."""
    assert_refused(r, lambda: solo.shorten(url), error, words, "http:// or https://")


BAD_SETTINGS = [
    (lambda s: s.shorten(URL, ttl=0), ValueError, ["ttl=0", "from 1 to 31536000"]),
    (lambda s: s.shorten(URL, ttl=-5), ValueError, ["ttl=-5"]),
    (lambda s: s.shorten(URL, ttl=math.nan), TypeError, ["ttl=nan"]),
    (lambda s: s.shorten(URL, ttl=True), TypeError, ["ttl=True"]),
    (lambda s: s.shorten(URL, ttl=10**12), ValueError, ["ttl=1000000000000"]),
    (lambda s: Shortener(s.client, ttl=3600.5), TypeError, ["ttl=3600.5"]),  # type: ignore[arg-type]
    (lambda s: Shortener(s.client, length=2), ValueError, ["length=2", "4 to 10"]),
    (lambda s: Shortener(s.client, length=11), ValueError, ["length=11"]),
    (lambda s: Shortener(s.client, length=True), TypeError, ["length=True"]),
    (lambda s: Shortener(s.client, prefix=""), ValueError, ["prefix=''"]),
    (lambda s: Shortener(s.client, prefix="a*"), ValueError, ["prefix='a*'", "glob"]),
    (lambda s: Shortener(s.client, prefix="{x}"), ValueError, ["prefix='{x}'"]),
    (lambda s: Shortener(s.client, prefix=5), TypeError, ["prefix=5"]),  # type: ignore[arg-type]
    (lambda s: Shortener("redis://x"), TypeError, ["client='redis://x'"]),  # type: ignore[arg-type]
    (lambda s: s.resolve(""), ValueError, ["code=''", "letters and digits"]),
    (lambda s: s.resolve("../etc"), ValueError, ["code='../etc'"]),
    (lambda s: s.resolve("x" * 65), ValueError, ["1 to 64"]),
    (lambda s: s.resolve(5), TypeError, ["code=5"]),
]


@pytest.mark.parametrize(("call", "error", "words"), BAD_SETTINGS)
def test_bad_settings_are_refused(
    r: redis.Redis,
    solo: Shortener,
    call: Callable[[Shortener], object],
    error: type[Exception],
    words: list[str],
) -> None:
    """TTLs, lengths, prefixes, clients and codes are checked before any write."""
    assert_refused(r, lambda: call(solo), error, *words)


def test_bytes_clients_are_refused(redis_url: str) -> None:
    """The shortener parses replies as str: a bytes client is refused up front."""
    raw = labkit.connect(redis_url, socket_timeout=5, decode_responses=False)
    try:
        with pytest.raises(TypeError, match="decode_responses=True"):
            Shortener(ShardedClient({"only": raw}, HashRing(["only"])))
    finally:
        raw.close()


def test_wrong_type_keys_are_reported_and_untouched(
    r: redis.Redis, solo: Shortener
) -> None:
    """A link or counters key of another type: WrongTypeError, nothing written."""
    code = solo._code(URL, 0)
    r.hset(solo.url_key(code), "x", "1")
    err = assert_refused(r, lambda: solo.shorten(URL), WrongTypeError, "hash")
    assert (err.key, err.found, err.expected) == (solo.url_key(code), "hash", "string")
    assert_refused(r, lambda: solo.resolve(code), WrongTypeError, "holds a hash")
    r.delete(solo.url_key(code))
    r.set(solo.stats_key, "not a hash")
    assert_refused(r, lambda: solo.resolve("abc1234"), WrongTypeError, "string")
    assert_refused(r, solo.stats, WrongTypeError, solo.stats_key)


def test_check_url_accepts_real_urls() -> None:
    """Ordinary URLs pass unchanged: ports, queries, fragments, IPv6, IDN."""
    for url in (
        "http://localhost:8080/a?b=c#d",
        "https://[::1]/x",
        "https://bücher.example/straße",
        "HTTPS://EXAMPLE.COM/",
    ):
        assert check_url(url) == url


@pytest.mark.timeout(120)
def test_a_server_down_fails_fast_naming_it(clients: dict[str, redis.Redis]) -> None:
    """A shortener over a dead server: that server's lookups fail in seconds."""
    dead = redis.Redis(
        port=free_port(), socket_timeout=1, retry=no_retry(), decode_responses=True
    )
    two = {"redis-a": clients["redis-a"], "gone": dead}
    short = Shortener(ShardedClient(two, JumpHash(list(two))))
    code = next(
        c for c in (f"c{i:06d}" for i in range(100))
        if short.client.node_for(short.url_key(c)) == "gone"
    )  # fmt: skip
    with pytest.raises(ShardUnavailableError, match="'gone'") as info:
        short.resolve(code)
    assert isinstance(info.value.__cause__, redis.ConnectionError)  # refused


def test_keys_audit(clients: dict[str, redis.Redis]) -> None:
    """After a normal run, every key is documented and only the counters lack a TTL."""
    short = tutorial(clients)
    codes = [short.shorten(f"https://example.com/audit/{i}") for i in range(30)]
    for code in [*codes, "missing1"]:
        short.resolve(code)
    for name in NAMES[:3]:
        seen = audit_keys(clients[name], Shortener)
        assert short.stats_key in seen
