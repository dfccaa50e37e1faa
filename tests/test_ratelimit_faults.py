"""labkit.ratelimit and labkit.flags under bad input and faults (issue 13).

Bad input is refused before anything is written (``assert_refused``); a frozen
or killed server gives a clear error within seconds or is recovered from; every
key left after a normal run is documented and expires or says why not.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import struct
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import redis
from checks import as_str, assert_refused, audit_keys

import labkit
from labkit.core.scripts import Script
from labkit.errors import FlagStoreError, MalformedMessageError, WrongTypeError
from labkit.flags import Flag, FlagStore
from labkit.lab.errors import ContentionError
from labkit.lab.measure import wait_until
from labkit.lab.ratelimit.contention import Contention
from labkit.lab.ratelimit.flags import propagation_ms
from labkit.lab.ratelimit.naive import TutorialWindow
from labkit.lab.ratelimit.simulate import traffic
from labkit.ratelimit import (
    ALGORITHMS,
    GCRA,
    FixedWindow,
    Limiter,
    Rate,
    SlidingLog,
    TokenBucket,
)
from labkit.server import Server, free_port, no_retry
from labkit.server.errors import ServerUnreachableError

ALL = list(ALGORITHMS.values())
NAN, INF = math.nan, math.inf


def ids(cls: type) -> str:
    return cls.__name__


def unreachable() -> redis.Redis:
    """A client of a port nothing listens on, failing at once."""
    return redis.Redis(
        port=free_port(), socket_connect_timeout=1, socket_timeout=1, retry=no_retry()
    )


def fast_client(server: Server) -> redis.Redis:
    """A client that gives up after 1 s of silence and never retries."""
    return server.client(socket_timeout=1, socket_connect_timeout=1, retry=no_retry())


# --- bad input: limiters ------------------------------------------------------

LIMIT_ERR = "must be an int from 1 to 2147483647"
PERIOD_ERR = "must be a finite number of seconds from 0.001 to 31536000"

CONSTRUCTION = [
    ({"limit": NAN}, TypeError, "limit=nan", LIMIT_ERR),
    ({"limit": 2**63}, ValueError, f"limit={2**63}", LIMIT_ERR),
    ({"limit": 0}, ValueError, "limit=0", LIMIT_ERR),
    ({"limit": -5}, ValueError, "limit=-5", LIMIT_ERR),
    ({"limit": True}, TypeError, "limit=True", LIMIT_ERR),
    ({"limit": 10.0}, TypeError, "limit=10.0", LIMIT_ERR),
    ({"limit": "10"}, TypeError, "limit='10'", LIMIT_ERR),
    ({"period": NAN}, ValueError, "period=nan", PERIOD_ERR),
    ({"period": INF}, ValueError, "period=inf", PERIOD_ERR),
    ({"period": 1e300}, ValueError, "period=1e+300", PERIOD_ERR),
    ({"period": 10**400}, ValueError, "period=100000...(401 digits)", PERIOD_ERR),
    ({"period": 0}, ValueError, "period=0", PERIOD_ERR),
    ({"period": -1}, ValueError, "period=-1", PERIOD_ERR),
    ({"period": True}, TypeError, "period=True", PERIOD_ERR),
    ({"period": "60"}, TypeError, "period='60'", PERIOD_ERR),
    ({"prefix": ""}, ValueError, "prefix=''", "non-empty str"),
    ({"prefix": 3}, TypeError, "prefix=3", "non-empty str"),
    ({"prefix": "a\nb"}, ValueError, "prefix='a\\nb'", "without line breaks"),
    ({"lookup": "tiers"}, TypeError, "lookup='tiers'", "must be callable"),
    ({"clock": 5}, TypeError, "clock=5", "must be callable"),
]


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize(("kwargs", "error", "named", "allowed"), CONSTRUCTION)
def test_construction_refused(
    r: redis.Redis,
    cls: type,
    kwargs: dict[str, Any],
    error: type,
    named: str,
    allowed: str,
) -> None:
    """A bad limit, period, prefix, lookup or clock: refused, nothing written."""
    args = {"limit": 5, "period": 10} | kwargs
    assert_refused(r, lambda: cls(r, **args), error, named, allowed)


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "named", "allowed"),
    [
        (GCRA, {"burst": 0}, ValueError, "burst=0", LIMIT_ERR),
        (GCRA, {"burst": 2**40}, ValueError, f"burst={2**40}", LIMIT_ERR),
        (TokenBucket, {"burst": True}, TypeError, "burst=True", LIMIT_ERR),
        (TokenBucket, {"burst": NAN}, TypeError, "burst=nan", LIMIT_ERR),
        (SlidingLog, {"burst": 3}, TypeError, "burst=3", "SlidingLog has no burst"),
        # A bucket that takes longer than a year to refill: the key would have
        # to outlive its one-year expiry bound.
        (
            GCRA,
            {"limit": 1, "period": 3e7, "burst": 2},
            ValueError,
            "burst=2",
            "must be at most 31536000 (a year)",
        ),
    ],
)
def test_burst_refused(
    r: redis.Redis,
    cls: type,
    kwargs: dict[str, Any],
    error: type,
    named: str,
    allowed: str,
) -> None:
    """A bad burst, or one an algorithm has not: refused, nothing written."""
    args = {"limit": 5, "period": 10} | kwargs
    assert_refused(r, lambda: cls(r, **args), error, named, allowed)


@pytest.mark.parametrize("client", ["redis://localhost", None, 6379])
def test_client_refused(r: redis.Redis, client: object) -> None:
    """Something that is not a redis client: a TypeError naming it."""
    assert_refused(r, lambda: GCRA(client, 5, 10), TypeError, "client=", "redis.Redis")  # type: ignore[arg-type]


CALLS = [
    ("", 1, ValueError, "key=''", "non-empty str"),
    (None, 1, TypeError, "key=None", "non-empty str (or an int)"),
    (b"u", 1, TypeError, "key=b'u'", "non-empty str (or an int)"),
    (True, 1, TypeError, "key=True", "non-empty str (or an int)"),
    ("u", 0, ValueError, "cost=0", LIMIT_ERR),
    ("u", NAN, TypeError, "cost=nan", LIMIT_ERR),
    ("u", True, TypeError, "cost=True", LIMIT_ERR),
    ("u", 2**63, ValueError, f"cost={2**63}", LIMIT_ERR),
    ("u", 6, ValueError, "cost=6", "allowed: 1..5"),
]


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize(("key", "cost", "error", "named", "allowed"), CALLS)
def test_call_refused(
    r: redis.Redis,
    cls: type,
    key: object,
    cost: object,
    error: type,
    named: str,
    allowed: str,
) -> None:
    """A bad key or cost in allow(): refused before any round trip."""
    lim = cls(r, limit=5, period=10)
    assert_refused(r, lambda: lim.allow(key, cost=cost), error, named, allowed)


@pytest.mark.parametrize(
    ("keys", "error", "named", "allowed"),
    [
        ("abc", TypeError, "keys='abc'", "a bare str is one key"),
        (b"abc", TypeError, "keys=b'abc'", "a bare str is one key"),
        (5, TypeError, "keys=5", "a list of keys"),
        (["a", ""], ValueError, "keys item=''", "non-empty str"),
        (["a", None], TypeError, "keys item=None", "non-empty str"),
    ],
)
def test_batch_refused(
    r: redis.Redis, keys: object, error: type, named: str, allowed: str
) -> None:
    """allow_many: a bare str is not a list; one bad key refuses the whole batch."""
    lim = GCRA(r, limit=5, period=10)
    assert_refused(r, lambda: lim.allow_many(keys), error, named, allowed)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("found", "error", "named", "allowed"),
    [
        (NAN, TypeError, "lookup('u') limit=nan", LIMIT_ERR),
        ("10", TypeError, "lookup('u') limit='10'", LIMIT_ERR),
        (True, TypeError, "lookup('u') limit=True", LIMIT_ERR),
        (2**63, ValueError, f"lookup('u') limit={2**63}", LIMIT_ERR),
        (Rate(5, INF), ValueError, "lookup('u') period=inf", PERIOD_ERR),
        (Rate(5, 10, 0), ValueError, "lookup('u') burst=0", LIMIT_ERR),
        (Rate(1, 3e7, 5), ValueError, "lookup('u') burst=5", "a year"),
    ],
)
def test_lookup_answer_refused(
    r: redis.Redis, found: object, error: type, named: str, allowed: str
) -> None:
    """What a lookup returns is checked like the constructor's arguments."""
    lim = GCRA(r, limit=5, period=10, lookup=lambda key: found)  # type: ignore[arg-type,return-value]
    assert_refused(r, lambda: lim.allow("u"), error, named, allowed)


@pytest.mark.parametrize("now", [NAN, INF, -1.0, 1e300, "now"])
def test_clock_answer_refused(r: redis.Redis, now: object) -> None:
    """A clock that returns a non-finite, negative or absurd time is refused."""
    lim = SlidingLog(r, limit=5, period=10, clock=lambda: now)  # type: ignore[arg-type,return-value]
    error = TypeError if isinstance(now, str) else ValueError
    assert_refused(
        r, lambda: lim.allow("u"), error, "clock()=", "finite number of seconds"
    )


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize("kind", ["string", "list", "foreign hash"])
def test_wrong_type_key_refused(r: redis.Redis, cls: type, kind: str) -> None:
    """A key already holding something else: WrongTypeError, nothing written."""
    lim = cls(r, limit=5, period=10)
    key = lim.key("u")
    if kind == "string":
        r.set(key, "not a limiter")
    elif kind == "list":
        r.rpush(key, "x")
    else:
        r.hset(key, "someone", "else")
    err = assert_refused(
        r, lambda: lim.allow("u"), WrongTypeError, repr(key), "nothing was written"
    )
    assert err.key == key and err.found in ("string", "list", "hash")
    assert_refused(r, lambda: lim.allow_many(["u"]), WrongTypeError, repr(key))


def test_other_algorithm_state_refused(r: redis.Redis) -> None:
    """Two algorithms given one prefix: the second refuses the first's state."""
    TokenBucket(r, 5, 10, prefix="shared").allow("u")
    fixed = FixedWindow(r, 5, 10, prefix="shared")
    assert_refused(r, lambda: fixed.allow("u"), WrongTypeError, "shared:u")


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_unreachable_server(r: redis.Redis, cls: type) -> None:
    """No server at the address: a ConnectionError naming it, within seconds."""
    client = unreachable()
    port = client.connection_pool.connection_kwargs["port"]
    lim = cls(client, limit=5, period=10)
    assert_refused(r, lambda: lim.allow("u"), redis.ConnectionError, str(port))


def _cfg(limit: float, period: float, capacity: float) -> bytes:
    return struct.pack("<ddd", limit, period, capacity)


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        ([_cfg(5, 10, 5)], "period below 1 ms"),
        ([_cfg(5, 10_000_000, 5), "6"], "cost above the capacity"),
        ([_cfg(5, 10_000_000, 5), "1.5"], "fractional cost"),
        ([_cfg(5, 10_000_000, 5), "1", "nan"], "NaN time"),
        ([_cfg(5, 10_000_000, 5), "1", "5", "6"], "two times for one key"),
        ([_cfg(5, 1e20, 5)], "a period of 3e6 years"),
        ([_cfg(1, 31536000000000, 2)], "a refill longer than a year"),
        ([_cfg(2**63, 1_000_000, 5)], "a limit of 2**63"),
        ([_cfg(5.5, 1_000_000, 5)], "a fractional limit"),
        ([_cfg(math.nan, 1_000_000, 5)], "a NaN limit"),
        ([_cfg(5, 1_000_000, math.inf)], "an infinite capacity"),
        (["5 1000000 5"], "a config as text"),
        (["five per minute"], "no config at all"),
    ],
)
@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_scripts_validate_before_writing(
    r: redis.Redis, cls: type[Limiter], argv: list[str], why: str
) -> None:
    """Each script, called directly with bad ARGV, errors and writes nothing."""
    script: Script = cls.script
    before = r.dbsize()
    with pytest.raises(redis.ResponseError, match="BADARGS"):
        script(r, ["labkit:ratelimit:direct"], argv)
    assert r.dbsize() == before == 0, why


# --- bad input: flags ---------------------------------------------------------


@pytest.fixture
def flags(r: redis.Redis) -> Iterator[FlagStore]:
    """A store on the test database, closed afterwards."""
    with FlagStore(r, "t") as store:
        store.set("beta", on=True)
        yield store


PERCENT = "must be a finite number (a share) from 0 to 100"
FLAG_CALLS: list[tuple[str, Callable[[FlagStore], Any], type, str, str]] = [
    ("name empty", lambda f: f.set(""), ValueError, "name=''", "non-empty str"),
    ("name int", lambda f: f.set(3), TypeError, "name=3", "non-empty str"),  # type: ignore[arg-type]
    ("name list", lambda f: f.set(["a"]), TypeError, "name=['a']", "non-empty str"),  # type: ignore[arg-type]
    ("on str", lambda f: f.set("x", on="yes"), TypeError, "on='yes'", "True or False"),  # type: ignore[arg-type]
    ("on int", lambda f: f.set("x", on=1), TypeError, "on=1", "True or False"),  # type: ignore[arg-type]
    ("pct nan", lambda f: f.set("x", percent=NAN), ValueError, "percent=nan", PERCENT),
    ("pct inf", lambda f: f.set("x", percent=INF), ValueError, "percent=inf", PERCENT),
    ("pct 101", lambda f: f.set("x", percent=101), ValueError, "percent=101", PERCENT),
    ("pct -1", lambda f: f.set("x", percent=-1), ValueError, "percent=-1", PERCENT),
    ("pct bool", lambda f: f.set("x", percent=True), TypeError, "percent=True", PERCENT),  # noqa: E501
    ("pct 10**400", lambda f: f.set("x", percent=10**400), ValueError, "percent=100000...(401 digits)", PERCENT),  # noqa: E501
    ("value nan", lambda f: f.set("x", value=NAN), TypeError, "value=nan", "no NaN"),
    ("value obj", lambda f: f.set("x", value=object()), TypeError, "value=", "JSON"),
    ("value huge", lambda f: f.set("x", value="x" * 70_000), ValueError, "value=", "at most 65536"),  # noqa: E501
    ("delete empty", lambda f: f.delete(""), ValueError, "name=''", "non-empty str"),
    ("get int", lambda f: f.get(3), TypeError, "name=3", "non-empty str"),  # type: ignore[arg-type]
    ("enabled none", lambda f: f.is_enabled(None), TypeError, "name=None", "non-empty str"),  # type: ignore[arg-type]  # noqa: E501
    ("actor list", lambda f: f.is_enabled("beta", actor=[1]), TypeError, "actor=[1]", "non-empty str"),  # type: ignore[arg-type]  # noqa: E501
    ("actor empty", lambda f: f.is_enabled("beta", actor=""), ValueError, "actor=''", "non-empty str"),  # noqa: E501
    ("default str", lambda f: f.is_enabled("beta", default="no"), TypeError, "default='no'", "True or False"),  # type: ignore[arg-type]  # noqa: E501
    ("wait check", lambda f: f.wait_until(5), TypeError, "check=5", "must be callable"),  # type: ignore[arg-type]
    ("wait nan", lambda f: f.wait_until(lambda s: 0, timeout=NAN), ValueError, "timeout=nan", "finite number of seconds"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "named", "allowed"),
    [c[1:] for c in FLAG_CALLS],
    ids=[c[0] for c in FLAG_CALLS],
)
def test_flag_call_refused(
    r: redis.Redis,
    flags: FlagStore,
    call: Callable[[FlagStore], Any],
    error: type,
    named: str,
    allowed: str,
) -> None:
    """Bad names, states, percents, values, actors and waits: refused cleanly."""
    assert_refused(r, lambda: call(flags), error, named, allowed)
    assert flags.all() == {"beta": Flag("beta", True, None, 100.0)}


@pytest.mark.parametrize(
    ("kwargs", "error", "named", "allowed"),
    [
        ({"client": "redis"}, TypeError, "client='redis'", "needs a redis.Redis"),
        ({"namespace": ""}, ValueError, "namespace=''", "non-empty str"),
        ({"namespace": 3}, TypeError, "namespace=3", "non-empty str"),
        ({"namespace": "a\nb"}, ValueError, "namespace=", "without line breaks"),
        ({"on_change": 5}, TypeError, "on_change=5", "must be callable"),
        ({"timeout": NAN}, ValueError, "timeout=nan", "finite number of seconds"),
        ({"timeout": 0}, ValueError, "timeout=0", "finite number of seconds"),
        ({"prefix": ""}, ValueError, "prefix=''", "non-empty str"),
    ],
)
def test_flagstore_construction_refused(
    r: redis.Redis, kwargs: dict[str, Any], error: type, named: str, allowed: str
) -> None:
    """A bad client, namespace, callback or timeout: refused, nothing started."""
    args = {"client": r} | kwargs
    threads = threading.active_count()
    assert_refused(r, lambda: FlagStore(**args), error, named, allowed)
    assert threading.active_count() == threads


@pytest.mark.parametrize(
    "setup",
    [
        lambda r: r.set("labkit:flags:bad", "not a hash"),
        lambda r: r.set("labkit:flags:bad:version", "seven"),
        lambda r: r.rpush("labkit:flags:bad:version", 1),
    ],
    ids=["flags string", "version text", "version list"],
)
def test_flagstore_wrong_type_keys(
    r: redis.Redis, setup: Callable[[redis.Redis], Any]
) -> None:
    """Flag-set keys holding something else: FlagStoreError naming them."""
    setup(r)
    threads = threading.active_count()
    assert_refused(
        r,
        lambda: FlagStore(r, "bad").start(),
        FlagStoreError,
        "labkit:flags:bad",
        "nothing",
    )
    assert threading.active_count() == threads


def test_flag_change_validates_before_writing(r: redis.Redis, flags: FlagStore) -> None:
    """The hash turned into a string under a running store: set() writes nothing.

    The change script checks both keys before it bumps the version; before,
    a MULTI bumped nothing but failed half-way (HSET error, PUBLISH sent).
    """
    version = r.get(flags.version_key)
    r.delete(flags.key)
    r.set(flags.key, "oops")
    assert_refused(r, lambda: flags.set("x"), FlagStoreError, flags.key, "nothing")
    assert r.get(flags.version_key) == version  # so nothing was announced either


def test_flagstore_unreachable(r: redis.Redis) -> None:
    """No server: a ConnectionError within seconds, no listener thread left."""
    threads = threading.active_count()
    assert_refused(
        r, lambda: FlagStore(unreachable()).start(), redis.ConnectionError, ""
    )
    assert threading.active_count() == threads


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [
        (lambda: traffic(NAN, 10), ValueError, "rate=nan"),
        (lambda: traffic(1, INF), ValueError, "seconds=inf"),
        (lambda: traffic(1e5, 100), ValueError, "at most 1,000,000"),
        (lambda: traffic(1, 10, burstiness=NAN), ValueError, "burstiness=nan"),
        (lambda: traffic(1, 10, seed=-1), ValueError, "seed=-1"),
        (lambda: TutorialWindow(redis.Redis(), limit=0), ValueError, "limit=0"),
        (lambda: TutorialWindow(redis.Redis(), window=NAN), TypeError, "window=nan"),  # type: ignore[arg-type]
    ],
)
def test_lab_helpers_refuse(
    r: redis.Redis, call: Callable[[], Any], error: type, named: str
) -> None:
    """The lab's trace generator and tutorial limiter check their numbers too."""
    assert_refused(r, call, error, named)


def test_propagation_bad_n(r: redis.Redis, flags: FlagStore) -> None:
    """propagation_ms needs a count of changes from 1 to 100,000."""
    for n in (0, True, 10**6):
        error = TypeError if n is True else ValueError
        assert_refused(r, partial(propagation_ms, flags, flags, n), error, f"n={n}")


# --- contention harness ---------------------------------------------------------


def test_contention_unreachable_url(r: redis.Redis) -> None:
    """An unreachable URL: ServerUnreachableError in seconds, no process started."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert_refused(r, lambda: Contention(url, processes=2), ServerUnreachableError, url)
    assert multiprocessing.active_children() == []


@pytest.mark.timeout(120)
def test_contention_server_killed_between_trials() -> None:
    """The server dies after a trial: the next one raises, bounded, workers freed."""
    with Server() as srv, Contention(srv.url, processes=2) as pool:
        assert pool.run("gcra", "k", attempts=10, limit=5) == 5
        with pytest.raises(ValueError, match="attempts=0"):
            pool.run("gcra", "k", attempts=0)
        srv.kill()
        with pytest.raises(ContentionError, match="a worker failed") as info:
            pool.run("gcra", "k2", attempts=10, limit=5, timeout=30)
        assert info.value.algorithm == "gcra"
        assert srv.password not in info.value.url
    assert multiprocessing.active_children() == []


# --- faults: limiters -----------------------------------------------------------


@pytest.mark.timeout(120)
def test_limiter_call_when_server_killed() -> None:
    """SIGKILL while a thread makes decisions: a ConnectionError within seconds."""
    with Server() as srv:
        lim = GCRA(fast_client(srv), limit=10**6, period=60)
        errors: list[BaseException] = []
        decided = [0]

        def hammer() -> None:
            try:
                while True:
                    lim.allow("u")
                    decided[0] += 1
            except redis.RedisError as exc:
                errors.append(exc)

        thread = threading.Thread(target=hammer, daemon=True)
        thread.start()
        assert wait_until(lambda: decided[0] >= 50, timeout=10)
        srv.kill()
        thread.join(60)
        assert not thread.is_alive()
        assert isinstance(errors[0], redis.ConnectionError)
        srv.restart()  # no persistence: the key starts over, nothing stale
        assert lim.allow("u").remaining == 10**6 - 1
    assert not srv.running


@pytest.mark.timeout(120)
def test_limiter_call_when_server_frozen() -> None:
    """SIGSTOP: single and batch calls time out within seconds; after SIGCONT the
    state is intact, give or take the one call the server ran once it woke."""
    with Server() as srv:
        lim = SlidingLog(fast_client(srv), limit=100, period=3600)
        assert lim.allow("u").remaining == 99
        os.kill(srv.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        try:
            for call in (lambda: lim.allow("u"), lambda: lim.allow_many(["u"])):
                with pytest.raises(redis.TimeoutError):
                    call()
        finally:
            os.kill(srv.pid, signal.SIGCONT)  # type: ignore[arg-type]
        # The timed-out requests reached the server's socket before the freeze
        # ended: each may have been decided anyway. A timeout is not a refusal.
        assert lim.allow("u").remaining in (98, 97, 96)
    assert not srv.running


# --- faults: flags ----------------------------------------------------------------


def test_on_change_error_is_counted_not_hidden(r: redis.Redis, redis_url: str) -> None:
    """A ValueError from on_change is counted and kept; no reload; changes go on."""
    seen: list[str] = []

    def picky(name: str, flag: Flag | None) -> None:
        seen.append(name)
        if name == "bad":
            raise ValueError("the user's bug")

    other = labkit.connect(redis_url)
    with FlagStore(r, on_change=picky) as store, FlagStore(other) as admin:
        admin.set("bad", value=1)
        admin.set("good", value=2)
        assert wait_until(lambda: store.value("good") == 2)
        assert store.value("bad") == 1  # applied before the callback failed
        assert seen == ["bad", "good"]
        assert store.stats.callback_errors == 1
        assert isinstance(store.stats.last_error, ValueError)
        assert store.loads == 1 and store.running  # no reload hid it
    other.close()


def test_malformed_announcement_is_counted(r: redis.Redis, flags: FlagStore) -> None:
    """Garbage on the channel: counted as a bad message; the listener goes on."""
    for junk in ("garbage", "7 [1, 2]", '3 ["x", "{not json"]', "x " + json.dumps([])):
        r.publish(flags.channel, junk)
    flags_writer = FlagStore(r, "t").start()
    flags_writer.set("after", on=True)
    flags_writer.close()
    assert wait_until(lambda: flags.get("after") is not None)
    assert flags.stats.bad_messages == 4
    assert isinstance(flags.stats.last_error, MalformedMessageError)
    assert flags.running and flags.loads == 1


class HookedRedis(redis.Redis):
    """A client that runs ``after_write`` once, right after its next write returns
    (EVALSHA, or a MULTI pipeline), before the caller sees the reply."""

    after_write: Callable[[], None] | None = None

    def _fire(self) -> None:
        hook, self.after_write = self.after_write, None
        if hook is not None:
            hook()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = super().execute_command(*args, **options)
        if args[0] in ("EVALSHA", "EVAL"):
            self._fire()
        return reply

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def execute_then_fire(*args: Any, **kwargs: Any) -> Any:
            reply = execute(*args, **kwargs)
            self._fire()
            return reply

        pipe.execute = execute_then_fire  # type: ignore[method-assign]
        return pipe


def test_own_change_never_overwrites_a_newer_one(
    r: redis.Redis, redis_url: str
) -> None:
    """A newer change heard while our own write was in flight survives it.

    Before: set() applied its own (older) value after EXEC, over the newer one
    its listener had just applied, and the stale value stayed.
    """
    hooked = HookedRedis.from_url(redis_url, decode_responses=True)
    assert isinstance(hooked, HookedRedis)  # redis-py types from_url as Redis
    other = labkit.connect(redis_url)
    with FlagStore(hooked) as a, FlagStore(other) as b:

        def newer_change_lands_first() -> None:
            b.set("limit", value="newer")
            assert wait_until(lambda: a.value("limit") == "newer")

        hooked.after_write = newer_change_lands_first
        a.set("limit", value="older")
        assert a.value("limit") == "newer" == b.value("limit")
        assert json.loads(as_str(r.hget(a.key, "limit")))["value"] == "newer"
    hooked.close()
    other.close()


def test_late_old_announcement_is_ignored(r: redis.Redis, flags: FlagStore) -> None:
    """An announcement older than what the copy holds changes nothing."""
    flags.set("x", value=2)
    version = int(as_str(r.get(flags.version_key)))
    stale = json.dumps(["x", json.dumps({"on": True, "value": 1, "percent": 100})])
    r.publish(flags.channel, f"{version - 1} {stale}")
    flags.set("y", on=True)  # its echo comes after the stale one
    assert flags.wait_until(lambda s: s.stats.messages >= 4)
    assert flags.value("x") == 2


def test_client_kill_of_listener_reloads_and_reports(
    r: redis.Redis, redis_url: str
) -> None:
    """CLIENT KILL of the subscription: it reconnects, reloads, reports the outage."""
    client = labkit.connect(redis_url)
    with FlagStore(client) as store:
        r.hset(store.key, "beta", '{"on": true}')  # missed: never announced
        assert not store.is_enabled("beta")
        killed = r.client_kill_filter(_type="pubsub")
        assert killed >= 1
        assert wait_until(lambda: store.is_enabled("beta"), timeout=10)
        # The outage is reported as a reconnect (a client that retries a
        # dropped read reconnects at once: no network error, no downtime).
        assert store.loads == 2 and store.stats.reconnects == 1
        assert store.connected and store.running
    client.close()


def test_listener_survives_its_caller_closing_the_client(
    r: redis.Redis, redis_url: str
) -> None:
    """Closing the client a store was given does not stop its listener (before,
    the closed socket raised ValueError in the listener's thread, which died
    silently); close() leaves no connection of the store's behind."""
    baseline = len(r.client_list())
    client = labkit.connect(redis_url)
    store = FlagStore(client).start()
    # redis-py 8.1: a pool copied from connection_class and connection_kwargs
    # (minus the pool's own maintenance state) is a pool of its own.
    assert store._listen_client is not None
    own = store._listen_client.connection_pool
    assert own is not client.connection_pool
    assert own.connection_kwargs["db"] == client.connection_pool.connection_kwargs["db"]
    handler = own.connection_kwargs.get("maint_notifications_pool_handler")
    assert handler is None or handler.pool is own
    client.close()  # disconnects every connection of its pool
    admin = FlagStore(r).start()
    admin.set("x", value=1)
    assert wait_until(lambda: store.value("x") == 1)
    assert store.running and store.stats.callback_errors == 0
    store.close()
    admin.close()
    assert wait_until(lambda: len(r.client_list()) <= baseline)


@pytest.mark.timeout(120)
def test_flagstore_under_a_frozen_server() -> None:
    """SIGSTOP: reads stay local and instant, set() times out within seconds, the
    watchdog reports the silence; after SIGCONT it reconnects and reloads."""
    with Server() as srv:
        store = FlagStore(fast_client(srv), health_check_interval=0.5).start()
        try:
            store.set("beta", on=True)
            os.kill(srv.pid, signal.SIGSTOP)  # type: ignore[arg-type]
            try:
                # Local: a read that went to the frozen server would time out.
                assert all(store.is_enabled("beta") for _ in range(1000))
                with pytest.raises(redis.TimeoutError):
                    store.set("beta", on=False)
                assert wait_until(lambda: not store.connected, timeout=5)
                assert store.stats.unresponsive >= 1
            finally:
                os.kill(srv.pid, signal.SIGCONT)  # type: ignore[arg-type]
            assert wait_until(lambda: store.connected and store.loads >= 2, 10)
            assert store.stats.downtime > 0 and store.running
            # Whatever the server made of the timed-out set() when it woke up
            # (it may have run it), the copy comes to agree with the hash.
            check = srv.client()

            def agrees() -> bool:
                doc = json.loads(as_str(check.hget(store.key, "beta")))
                return store.get("beta") == Flag("beta", doc["on"], None)

            assert wait_until(agrees, timeout=5)
            check.close()
        finally:
            store.close()
    assert not srv.running


def test_flagstore_survives_a_restart_that_forgot_everything() -> None:
    """SIGKILL, restart without persistence: the version counter starts over, and
    the store still takes the new, lower-numbered changes."""
    with Server() as srv:
        reader = FlagStore(fast_client(srv)).start()
        writer = FlagStore(fast_client(srv)).start()
        try:
            for i in range(5):
                writer.set("beta", value=i)
            assert wait_until(lambda: reader.value("beta") == 4)
            srv.kill()
            srv.restart()
            assert wait_until(lambda: reader.loads >= 2 and writer.loads >= 2, 15)
            assert reader.all() == {}  # the server lost the set; so did the copy
            writer.set("beta", value="after")  # version 1 again
            assert wait_until(lambda: reader.value("beta") == "after")
            assert writer.value("beta") == "after"
        finally:
            reader.close()
            writer.close()
    assert not srv.running


# --- keys audit and cluster ---------------------------------------------------------


def test_keys_audit(r: redis.Redis) -> None:
    """After a normal run of every limiter and a flag store, every key is listed."""
    for cls in ALL:
        lim = cls(r, limit=3, period=30)
        for _ in range(4):
            lim.allow("u")
        lim.allow_many(["a", "b"])
    with FlagStore(r, "audit") as store:
        store.set("beta", on=True, value={"limit": 10})
        store.set("gone", on=True)
        store.delete("gone")
    seen = audit_keys(r, *ALL, FlagStore)
    assert len(seen) == 5 * 3 + 2


def test_limiters_and_flags_on_a_cluster() -> None:
    """Limiters decide on a real cluster (batches across slots); FlagStore refuses
    a cluster, saying why."""
    from labkit.server import Cluster

    with Cluster(masters=3) as cluster:
        rc = cluster.client()
        keys = [f"user:{i}" for i in range(30)]
        nodes = {rc.get_node_from_key(f"labkit:ratelimit:gcra:{k}").name for k in keys}
        assert len(nodes) == 3  # the batch spans every primary
        for cls in ALL:
            lim = cls(rc, limit=2, period=60)
            first = lim.allow_many(keys + keys + keys)
            assert [d.allowed for d in first] == [True] * 60 + [False] * 30
            assert lim.allow("user:0").allowed is False
        with pytest.raises(TypeError, match="does not work on a RedisCluster: its"):
            FlagStore(rc)  # type: ignore[arg-type]
        rc.close()
