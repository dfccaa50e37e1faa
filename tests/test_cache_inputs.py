"""labkit.cache refuses bad input before it writes, and documents every key it writes.

Each row of the table is one bad call: the error it must raise, the words the
message must contain (the argument, its value, what is allowed), and, checked
by ``assert_refused``, that the database is unchanged and the refusal quick.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import redis
from checks import assert_refused, audit_keys

from labkit.cache import Cache, ClientSideCache, GroupedCache
from labkit.core.clients import supports
from labkit.errors import WrongTypeError
from labkit.lab.caching import ReadLog
from labkit.server import free_port, no_retry

OK: dict[str, Any] = {"namespace": "ok", "ttl": 60}


def cache(r: redis.Redis, **kw: Any) -> Cache:
    return Cache(r, **{**OK, **kw})


def grouped(r: redis.Redis, **kw: Any) -> GroupedCache:
    return GroupedCache(r, **{**OK, **kw})


Call = Callable[[redis.Redis], Any]
# fmt: off
# (id, call, error, words...)
CASES: list[tuple[str, Call, type[BaseException], tuple[str, ...]]] = [
    # --- Cache(...) --------------------------------------------------------
    ("cache-client-url", lambda r: Cache("redis://x", **OK), TypeError,  # type: ignore[arg-type]
     ("client='redis://x'", "redis.Redis")),
    ("cache-ns-empty", lambda r: cache(r, namespace=""), ValueError,
     ("namespace=''", "non-empty")),
    ("cache-ns-brace", lambda r: cache(r, namespace="a{b}"), ValueError,
     ("namespace='a{b}'", "'{'")),
    ("cache-ns-brace-only", lambda r: cache(r, namespace="}"), ValueError,
     ("namespace='}'", "'}'")),
    ("cache-ns-int", lambda r: cache(r, namespace=3), TypeError,
     ("namespace=3", "str")),
    ("cache-ns-list", lambda r: cache(r, namespace=["users"]), TypeError,
     ("namespace=['users']", "str")),
    ("cache-ttl-huge", lambda r: cache(r, ttl=10**400), ValueError,
     ("ttl=100000...(401 digits)", "finite number of seconds")),
    ("set-value-nan", lambda r: cache(r).set("k", math.nan), TypeError,
     ("labkit:cache:{ok:k}", "set() was given value=nan")),
    ("cache-ttl-nan", lambda r: cache(r, ttl=math.nan), ValueError,
     ("ttl=nan", "finite number of seconds")),
    ("cache-ttl-inf", lambda r: cache(r, ttl=math.inf), ValueError,
     ("ttl=inf", "finite number of seconds")),
    ("cache-ttl-zero", lambda r: cache(r, ttl=0), ValueError,
     ("ttl=0", "from 0.001")),
    ("cache-ttl-negative", lambda r: cache(r, ttl=-5), ValueError,
     ("ttl=-5", "from 0.001")),
    ("cache-ttl-huge", lambda r: cache(r, ttl=10**12), ValueError,
     ("ttl=1000000000000", "31536000")),
    ("cache-ttl-bool", lambda r: cache(r, ttl=True), TypeError,
     ("ttl=True", "finite number")),
    ("cache-ttl-str", lambda r: cache(r, ttl="60"), TypeError,
     ("ttl='60'", "finite number")),
    ("cache-jitter-2", lambda r: cache(r, jitter=2), ValueError,
     ("jitter=2", "from 0 to 1")),
    ("cache-jitter-nan", lambda r: cache(r, jitter=math.nan), ValueError,
     ("jitter=nan", "from 0 to 1")),
    ("cache-stampede", lambda r: cache(r, stampede="mutex"), ValueError,
     ("stampede='mutex'", "'lock'")),
    ("cache-lease-zero", lambda r: cache(r, lease_ttl=0), ValueError,
     ("lease_ttl=0", "seconds")),
    ("cache-lease-inf", lambda r: cache(r, lease_ttl=math.inf), ValueError,
     ("lease_ttl=inf", "86400")),
    ("cache-poll-zero", lambda r: cache(r, poll_interval=0), ValueError,
     ("poll_interval=0", "seconds")),
    ("cache-beta-zero", lambda r: cache(r, beta=0), ValueError,
     ("beta=0", "> 0")),
    ("cache-beta-inf", lambda r: cache(r, beta=math.inf), ValueError,
     ("beta=inf", "1e+09")),
    ("cache-beta-negative", lambda r: cache(r, beta=-1), ValueError,
     ("beta=-1", "> 0")),
    ("cache-rng-int", lambda r: cache(r, rng=7), TypeError,
     ("rng=7", "random.Random")),
    ("cache-on-read-int", lambda r: cache(r, on_read=7), TypeError,
     ("on_read=7", "callable")),
    ("cache-prefix-empty", lambda r: cache(r, prefix=""), ValueError,
     ("prefix=''", "non-empty")),
    ("cache-prefix-brace", lambda r: cache(r, prefix="a{b"), ValueError,
     ("prefix='a{b'", "'{'")),
    ("group-prefix-int", lambda r: grouped(r, prefix=7), TypeError,
     ("prefix=7", "str")),
    ("group-on-read-str", lambda r: grouped(r, on_read="x"), TypeError,
     ("on_read='x'", "callable")),
    ("log-samples-zero", lambda r: ReadLog(max_samples=0), ValueError,
     ("max_samples=0", "from 1")),
    ("log-samples-bool", lambda r: ReadLog(max_samples=True), TypeError,
     ("max_samples=True", "an int")),
    ("log-samples-huge", lambda r: ReadLog(max_samples=10**9), ValueError,
     ("max_samples=1000000000", "10000000")),
    # --- Cache methods -------------------------------------------------------
    ("get-key-empty", lambda r: cache(r).get_or_load("", lambda: 1), ValueError,
     ("key=''", "non-empty")),
    ("get-key-brace", lambda r: cache(r).get_or_load("a}b", lambda: 1), ValueError,
     ("key='a}b'", "'}'")),
    ("get-key-braces-only", lambda r: cache(r).get_or_load("{}", lambda: 1),
     ValueError, ("key='{}'", "hash tag")),
    ("get-key-none", lambda r: cache(r).get_or_load(None, lambda: 1), TypeError,  # type: ignore[arg-type]
     ("key=None", "non-empty str")),
    ("get-key-bool", lambda r: cache(r).get_or_load(True, lambda: 1), TypeError,
     ("key=True", "non-empty str")),
    ("get-key-float", lambda r: cache(r).get_or_load(1.5, lambda: 1), TypeError,  # type: ignore[arg-type]
     ("key=1.5", "non-empty str")),
    ("get-loader-str", lambda r: cache(r).get_or_load("k", "users"), TypeError,  # type: ignore[arg-type]
     ("loader='users'", "callable")),
    ("get-value-set", lambda r: cache(r).get_or_load("k", lambda: {1, 2}),
     TypeError, ("labkit:cache:{ok:k}", "set", "JSON-serialisable")),
    ("get-value-nan", lambda r: cache(r).get_or_load("k", lambda: math.nan),
     TypeError, ("labkit:cache:{ok:k}", "float (finite)")),
    ("xfetch-value-set",
     lambda r: cache(r, stampede="xfetch").get_or_load("k", lambda: {1}),
     TypeError, ("labkit:cache:{ok:k}", "set")),
    ("set-value-set", lambda r: cache(r).set("k", {1, 2}), TypeError,
     ("labkit:cache:{ok:k}", "JSON-serialisable")),
    ("set-key-empty", lambda r: cache(r).set("", 1), ValueError, ("key=''",)),
    ("invalidate-key-brace", lambda r: cache(r).invalidate("{x}"), ValueError,
     ("key='{x}'", "'{'")),
    ("cached-key-str", lambda r: cache(r).cached(key="user"), TypeError,  # type: ignore[arg-type]
     ("key='user'", "callable")),
    # --- GroupedCache ---------------------------------------------------------
    ("group-client-none", lambda r: GroupedCache(None, **OK), TypeError,  # type: ignore[arg-type]
     ("client=None", "redis.Redis")),
    ("group-ttl-nan", lambda r: grouped(r, ttl=math.nan), ValueError,
     ("ttl=nan", "finite number of seconds")),
    ("group-ttl-huge", lambda r: grouped(r, ttl=1e12), ValueError,
     ("ttl=1000000000000.0", "31536000")),
    ("group-jitter-negative", lambda r: grouped(r, jitter=-0.1), ValueError,
     ("jitter=-0.1", "from 0 to 1")),
    ("group-per-field-str", lambda r: grouped(r, per_field_expiry="yes"), TypeError,
     ("per_field_expiry='yes'", "True, False or None")),
    ("group-ns-brace", lambda r: grouped(r, namespace="{p}"), ValueError,
     ("namespace='{p}'", "'{'")),
    ("group-owner-empty", lambda r: grouped(r).get_or_load("", "q", lambda: 1),
     ValueError, ("owner=''", "non-empty")),
    ("group-owner-brace", lambda r: grouped(r).get_or_load("7}", "q", lambda: 1),
     ValueError, ("owner='7}'", "'}'")),
    ("group-owner-none", lambda r: grouped(r).invalidate_owner(None), TypeError,  # type: ignore[arg-type]
     ("owner=None", "non-empty str")),
    ("group-key-empty", lambda r: grouped(r).get_or_load(7, "", lambda: 1),
     ValueError, ("key=''", "non-empty")),
    ("group-key-list", lambda r: grouped(r).get_or_load(7, ["q"], lambda: 1),  # type: ignore[arg-type]
     TypeError, ("key=['q']", "non-empty str")),
    ("group-loader-none", lambda r: grouped(r).get_or_load(7, "q", None), TypeError,  # type: ignore[arg-type]
     ("loader=None", "callable")),
    ("group-value-set", lambda r: grouped(r).get_or_load(7, "q", lambda: {1}),
     TypeError, ("'q'", "set")),
    ("group-invalidate-key-bool", lambda r: grouped(r).invalidate(7, False),
     TypeError, ("key=False", "non-empty str")),
    # --- ClientSideCache --------------------------------------------------------
    ("local-client-str", lambda r: ClientSideCache("localhost"), TypeError,  # type: ignore[arg-type]
     ("client='localhost'", "redis.Redis")),
    ("local-max-zero", lambda r: ClientSideCache(r, max_entries=0), ValueError,
     ("max_entries=0", "from 1")),
    ("local-max-float", lambda r: ClientSideCache(r, max_entries=2.5), TypeError,  # type: ignore[arg-type]
     ("max_entries=2.5", "an int")),
    ("local-max-bool", lambda r: ClientSideCache(r, max_entries=True), TypeError,
     ("max_entries=True", "an int")),
    ("local-timeout-nan", lambda r: ClientSideCache(r, timeout=math.nan),
     ValueError, ("timeout=nan", "finite number of seconds")),
    ("local-timeout-zero", lambda r: ClientSideCache(r, timeout=0), ValueError,
     ("timeout=0", "from 0.01")),
    ("local-check-inf", lambda r: ClientSideCache(r, check_interval=math.inf),
     ValueError, ("check_interval=inf", "60")),
]
# fmt: on


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [pytest.param(c, e, w, id=i) for i, c, e, w in CASES],
)
def test_bad_input_is_refused_before_any_write(
    r: redis.Redis, call: Call, error: type[BaseException], words: tuple[str, ...]
) -> None:
    """A bad argument raises a clear error naming it, quickly, writing nothing."""
    assert_refused(r, lambda: call(r), error, *words)


@pytest.fixture
def local(r: redis.Redis) -> Any:
    with ClientSideCache(r) as client_side:
        yield client_side


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        ("", ValueError, ("key=''", "non-empty")),
        (None, TypeError, ("key=None", "non-empty str")),
        (["a"], TypeError, ("key=['a']", "non-empty str")),
    ],
)
def test_local_cache_refuses_bad_keys(
    r: redis.Redis,
    local: ClientSideCache,
    bad: Any,
    error: type,
    words: tuple[str, ...],
) -> None:
    """ClientSideCache.get refuses an empty, missing or list key."""
    assert_refused(r, lambda: local.get(bad), error, *words)


def test_local_cache_refuses_an_unbounded_wait(
    r: redis.Redis, local: ClientSideCache
) -> None:
    """wait_invalidated(timeout=nan) is refused instead of waiting forever."""
    assert_refused(
        r,
        lambda: local.wait_invalidated("k", timeout=math.nan),
        ValueError,
        "timeout=nan",
        "finite number",
    )


# --- keys holding another type --------------------------------------------------
def test_cache_entry_holding_a_hash(r: redis.Redis) -> None:
    """A hash where an entry belongs: a WrongTypeError, nothing written or run."""
    c = cache(r, namespace="users")
    r.hset(c.key(7), "name", "someone else's")
    calls: list[int] = []
    for mode in ("lock", "none", "xfetch"):
        c = cache(r, namespace="users", stampede=mode)
        err = assert_refused(
            r,
            partial(c.get_or_load, 7, lambda: calls.append(1)),
            WrongTypeError,
            "labkit:cache:{users:7}",
            "holds a hash",
        )
        assert err.found == "hash" and err.expected == "string"
        assert_refused(r, partial(c.set, 7, {"n": 1}), WrongTypeError, "hash")
    assert calls == []


def test_cache_lease_holding_a_hash(r: redis.Redis) -> None:
    """A hash where the lease belongs: WrongTypeError naming it (issue 35: it
    used to stall every miss for lease_ttl), nothing stored, the hash stays."""
    c = cache(r, namespace="users", lease_ttl=0.2)
    r.hset(c.lease_key(7), "x", 1)
    assert_refused(
        r, lambda: c.get_or_load(7, lambda: {"n": 1}), WrongTypeError, ":lease"
    )
    assert r.type(c.lease_key(7)) == "hash" and not r.exists(c.key(7))


@pytest.mark.parametrize("per_field", [None, False])
def test_grouped_keys_holding_other_types(r: redis.Redis, per_field: Any) -> None:
    """An owner's key holding another type: WrongTypeError, nothing written."""
    g = grouped(r, namespace="posts", per_field_expiry=per_field)
    r.set(g.gen_key(7), "x")
    r.hset(g.gen_key(7) + "x", "x", 1)
    r.rename(g.gen_key(7) + "x", g.gen_key(7))  # the counter is now a hash
    assert_refused(r, lambda: g.invalidate_owner(7), WrongTypeError, ":gen", "hash")
    assert_refused(
        r, lambda: g.get_or_load(7, "q", lambda: 1), WrongTypeError, ":gen"
    )
    r.delete(g.gen_key(7))
    r.set(g.group_key(7), "a string")
    assert_refused(
        r,
        lambda: g.get_or_load(7, "q", lambda: 1),
        WrongTypeError,
        g.group_key(7),
        "holds a string",
    )
    assert_refused(r, lambda: g.invalidate_owner(7), WrongTypeError, "string")


def test_local_cache_key_holding_a_hash(r: redis.Redis, local: ClientSideCache) -> None:
    """GET through the local cache of a hash: WrongTypeError naming the key."""
    r.hset("city", "name", "Lima")
    assert_refused(r, lambda: local.get("city"), WrongTypeError, "'city'", "hash")


# --- an unreachable server --------------------------------------------------------
@pytest.fixture
def nowhere() -> Any:
    client = redis.Redis(
        host="127.0.0.1",
        port=free_port(),
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=no_retry(),
    )
    yield client
    client.close()


def test_unreachable_server_fails_fast(r: redis.Redis, nowhere: redis.Redis) -> None:
    """Each class against a closed port: a ConnectionError naming it, in seconds."""
    port = nowhere.connection_pool.connection_kwargs["port"]
    where = f"127.0.0.1:{port}"
    for mode in ("lock", "none", "xfetch"):

        def read(m: str = mode) -> object:
            return Cache(nowhere, **OK, stampede=m).get_or_load("k", int)

        assert_refused(
            r,
            read,
            redis.ConnectionError,
            where,
        )
    assert_refused(r, lambda: grouped(nowhere), redis.ConnectionError, where)
    assert_refused(
        r, lambda: ClientSideCache(nowhere).start(), redis.ConnectionError, where
    )


def test_per_field_expiry_refused_where_unsupported(r: redis.Redis) -> None:
    """per_field_expiry=True without HPEXPIRE: refused, naming the version."""
    if supports(r, "hash-field-ttl"):
        assert grouped(r, per_field_expiry=True).per_field_expiry is True
        return
    assert_refused(
        r,
        lambda: grouped(r, per_field_expiry=True),
        ValueError,
        "per_field_expiry=True",
        "7.4",
        "None",
    )


# --- keys audit ---------------------------------------------------------------
def test_keys_audit_after_a_normal_run(r: redis.Redis) -> None:
    """After every cache mode has run, each key is documented and has a TTL."""
    for mode in ("lock", "none", "xfetch"):
        c = cache(r, namespace=f"audit-{mode}", stampede=mode, rng=random.Random(1))
        for i in range(5):
            c.get_or_load(i, partial(dict, n=i))
        c.set("direct", [1])
        c.invalidate(0)
    held = cache(r, namespace="audit-lease")
    held.get_or_load("k", lambda: audit_keys(r, Cache, GroupedCache))  # lease live
    for per_field in {supports(r, "hash-field-ttl"), False}:
        g = grouped(r, namespace=f"audit-{per_field}", per_field_expiry=per_field)
        for owner in (1, 2):
            for q in ("a", "b"):
                g.get_or_load(owner, q, partial(list, [q]))
        g.invalidate_owner(1)
        g.invalidate(2, "a")
    with ClientSideCache(r) as local:
        r.set("city", "Lima", ex=60)
        local.get("city")
    r.delete("city")
    seen = audit_keys(r, Cache, GroupedCache)
    assert any(key.endswith(":gen") for key in seen)
    assert any(key.startswith("labkit:cache:{audit-lock:") for key in seen)
