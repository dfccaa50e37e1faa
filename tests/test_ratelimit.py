"""labkit.ratelimit: five atomic limiters, one interface, exact under contention."""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
import redis
from checks import as_str

import labkit
from labkit.lab.plots.ratelimit import (
    burst_curves,
    decision_timeline,
    log_memory,
    trailing_admitted,
)
from labkit.lab.ratelimit.contention import NAIVE, Contention
from labkit.lab.ratelimit.naive import (
    TutorialWindow,
    get_then_incr,
    incr_expire_nx,
    incr_refresh_expire,
)
from labkit.lab.ratelimit.search import worst_case
from labkit.lab.ratelimit.simulate import (
    ORIGIN,
    admitted_per_period,
    compare,
    peak,
    simulate,
    simulate_many,
    traffic,
)
from labkit.ratelimit import (
    ALGORITHMS,
    GCRA,
    Decision,
    FixedWindow,
    Limiter,
    Rate,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)

ALL = list(ALGORITHMS.values())
WINDOWS = [FixedWindow, SlidingLog, SlidingWindow]
BUCKETS = [TokenBucket, GCRA]


class Clock:
    """A hand-driven clock (seconds) for replaying time exactly."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ids(cls: type) -> str:
    return cls.__name__


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_limit_then_refuse(r: redis.Redis, cls: type[Limiter]) -> None:
    """A fresh key admits exactly `limit` back to back, counting down, then refuses."""
    lim = cls(r, limit=5, period=10, clock=Clock())
    got = [lim.allow("u") for _ in range(6)]
    assert [d.allowed for d in got] == [True] * 5 + [False]
    assert [d.remaining for d in got] == [4, 3, 2, 1, 0, 0]
    assert all(d.retry_after == 0 for d in got[:5]) and got[5].retry_after > 0
    assert isinstance(got[0], Decision) and isinstance(got[0].reset_after, float)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_retry_after_is_exact(r: redis.Redis, cls: type[Limiter]) -> None:
    """Refused, then still refused 1 ms before retry_after, allowed at retry_after."""
    clock = Clock()
    lim = cls(r, limit=4, period=8, clock=clock)
    rng = random.Random(7)
    for _ in range(40):
        clock.now += rng.uniform(0, 1.5)
        d = lim.allow("u", cost=rng.choice([1, 1, 2]))
        if not d.allowed:
            break
    else:
        pytest.fail("trace never hit the limit")
    cost = 2 if lim.allow("u", cost=2).allowed is False else 1
    refused_at = clock.now
    wait = lim.allow("u", cost=cost).retry_after
    assert wait > 0
    clock.now = refused_at + wait - 0.001
    assert not lim.allow("u", cost=cost).allowed
    clock.now = refused_at + wait
    assert lim.allow("u", cost=cost).allowed


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_full_again_after_reset_after(r: redis.Redis, cls: type[Limiter]) -> None:
    """After reset_after seconds of silence the key admits its full limit again."""
    clock = Clock()
    lim = cls(r, limit=3, period=6, clock=clock)
    last = [lim.allow("u") for _ in range(3)][-1]
    clock.now += last.reset_after
    assert [lim.allow("u").allowed for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_server_time_is_used_by_default(r: redis.Redis, cls: type[Limiter]) -> None:
    """Without a clock, state is stamped with the server's TIME, not the client's."""
    lim = cls(r, limit=2, period=60)
    assert lim.allow("u").allowed and lim.allow("u").allowed
    d = lim.allow("u")
    assert not d.allowed
    # The weighted window remembers two windows; the others one period.
    horizon = 120 if cls is SlidingWindow else 60
    assert 0 < d.retry_after <= horizon and 0 < d.reset_after <= horizon
    seconds, micros = r.time()
    server_now = seconds + micros / 1e6
    if cls is GCRA:  # the stored TAT is the server's now + 30 s (two used of 2/min)
        tat = float(as_str(r.get(lim.key("u")))) / 1e6
        assert tat - server_now == pytest.approx(60, abs=5)


def test_two_clients_share_server_time(r: redis.Redis, redis_url: str) -> None:
    """Two clients of one key see one consistent state (server clock, no skew)."""
    import labkit

    other = labkit.connect(redis_url)
    try:
        a, b = GCRA(r, limit=10, period=60), GCRA(other, limit=10, period=60)
        got = [(a if i % 2 else b).allow("shared").remaining for i in range(10)]
        assert got == list(range(9, -1, -1))
        assert not a.allow("shared").allowed and not b.allow("shared").allowed
    finally:
        other.close()


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_every_key_has_a_ttl(r: redis.Redis, cls: type[Limiter]) -> None:
    """Allowed, refused (cost > remaining) and batch calls leave keys with a TTL."""
    lim = cls(r, limit=5, period=30)
    lim.allow("u", cost=3)
    assert not lim.allow("u", cost=4).allowed  # cost > remaining: refused
    lim.allow_many(["a", "b", "u"])
    keys = list(r.scan_iter(match="labkit:ratelimit:*"))
    assert sorted(keys) == sorted(lim.key(k) for k in ("u", "a", "b"))
    for key in keys:
        assert 0 < r.pttl(key) <= 60_000, key


def test_no_limiter_key_without_ttl_after_everything(r: redis.Redis) -> None:
    """Every algorithm and path (refusals, batches, lookups): no key lacks a TTL."""
    clock = Clock()
    for cls in ALL:
        gold = Rate(20, 120, 5 if cls in BUCKETS else None)
        tiers = {"gold": gold, "silver": 3}.get
        for kw in ({}, {"clock": clock}, {"lookup": tiers}):
            lim = cls(r, limit=5, period=30, **kw)
            for key in ("u", "gold", "silver"):
                lim.allow(key, cost=2)
                lim.allow(key, cost=3)
                lim.allow(key, cost=2)  # refused: more than remains
                lim.allow_many([key, key, "other"])
                clock.now += 7
    keys = list(r.scan_iter(match="labkit:ratelimit:*"))
    assert len(keys) >= 15
    without = [k for k in keys if r.pttl(k) < 0]
    assert without == []


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"limit": 0}, ValueError, "limit=0"),
        ({"limit": -3}, ValueError, "limit=-3"),
        ({"limit": 2.5}, TypeError, "limit=2.5"),
        ({"limit": True}, TypeError, "limit=True"),
        ({"period": 0}, ValueError, "period=0"),
        ({"period": -1.0}, ValueError, "period=-1.0"),
        ({"period": "60"}, TypeError, "period='60'"),
        ({"period": float("nan")}, ValueError, "period=nan"),
    ],
)
def test_bad_construction(
    r: redis.Redis, cls: type[Limiter], kwargs: dict[str, Any], error: type, named: str
) -> None:
    """A bad limit or period raises, naming the argument and its value."""
    args = {"limit": 5, "period": 10} | kwargs
    with pytest.raises(error, match=named):
        cls(r, **args)


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize(
    ("key", "cost", "error", "named"),
    [
        ("u", 6, ValueError, r"cost=6: more than the (limit|burst) of 5"),
        ("u", 0, ValueError, "cost=0"),
        ("u", 1.0, TypeError, "cost=1.0"),
        ("", 1, ValueError, "key=''"),
        (b"u", 1, TypeError, "key=b'u'"),
        (None, 1, TypeError, "key=None"),
    ],
)
def test_bad_call(
    r: redis.Redis,
    cls: type[Limiter],
    key: object,
    cost: object,
    error: type,
    named: str,
) -> None:
    """cost outside 1..limit and non-str keys raise, naming the argument."""
    lim = cls(r, limit=5, period=10)
    with pytest.raises(error, match=named):
        lim.allow(key, cost=cost)  # type: ignore[arg-type]
    assert r.dbsize() == 0


@pytest.mark.parametrize("cls", WINDOWS, ids=ids)
def test_windows_have_no_burst(r: redis.Redis, cls: type[Limiter]) -> None:
    """burst= is refused by algorithms that have none."""
    with pytest.raises(TypeError, match=r"burst=3: \w+ has no burst"):
        cls(r, limit=5, period=10, burst=3)


@pytest.mark.parametrize("cls", BUCKETS, ids=ids)
def test_burst_is_back_to_back_capacity(r: redis.Redis, cls: type[Limiter]) -> None:
    """burst=b admits b at once; after that one per period/limit; burst=1 spaces all."""
    clock = Clock()
    lim = cls(r, limit=10, period=60, burst=3, clock=clock)
    assert [lim.allow("u").allowed for _ in range(4)] == [True] * 3 + [False]
    assert lim.allow("u").retry_after == pytest.approx(6.0)
    strict = cls(r, limit=10, period=60, burst=1, clock=clock, prefix="strict")
    assert strict.allow("u").allowed and not strict.allow("u").allowed
    clock.now += 6
    assert strict.allow("u").allowed


def test_gcra_decides_like_token_bucket(r: redis.Redis) -> None:
    """On the same seeded trace, GCRA and TokenBucket make the same decisions."""
    clock = Clock()
    gcra = GCRA(r, limit=7, period=10, burst=4, clock=clock)
    bucket = TokenBucket(r, limit=7, period=10, burst=4, clock=clock)
    rng = random.Random(42)
    for _ in range(300):
        clock.now += rng.expovariate(1.2)
        cost = rng.choice([1, 1, 1, 2, 4])
        g, b = gcra.allow("u", cost), bucket.allow("u", cost)
        assert g.allowed == b.allowed and g.remaining == b.remaining
        assert g.retry_after == pytest.approx(b.retry_after, abs=2e-6)


def _admitted_in_any_period(times: list[float], period: float) -> int:
    j, best = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - period:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_fixed_window_admits_twice_the_limit_at_an_edge(r: redis.Redis) -> None:
    """Fixed window: limit - 1 at a window's end + limit after it; log: never."""
    clock = Clock()
    fixed = FixedWindow(r, limit=10, period=60, clock=clock)
    log = SlidingLog(r, limit=10, period=60, clock=clock)
    fixed.allow("u")  # opens a window at t=1000
    log.allow("u")
    admitted: dict[str, list[float]] = {"fixed": [], "log": []}
    for t in [1059.0] * 12 + [1060.5] * 12:
        clock.now = t
        if fixed.allow("u").allowed:
            admitted["fixed"].append(t)
        if log.allow("u").allowed:
            admitted["log"].append(t)
    assert _admitted_in_any_period(admitted["fixed"], 60) == 19  # + the first = 20
    assert _admitted_in_any_period([1000.0, *admitted["log"]], 60) == 10


@pytest.mark.parametrize("cls", [SlidingLog, TokenBucket, GCRA], ids=ids)
def test_never_more_than_limit_plus_burst_in_a_period(
    r: redis.Redis, cls: type[Limiter]
) -> None:
    """On a bursty seeded trace, no period ever admits more than its bound."""
    clock = Clock()
    lim = cls(r, limit=10, period=5, clock=clock)
    rng = random.Random(3)
    times = []
    for _ in range(600):
        clock.now += rng.expovariate(8) if rng.random() < 0.8 else rng.uniform(0, 3)
        if lim.allow("u").allowed:
            times.append(clock.now)
    # The log is exact; a bucket adds at most its capacity to a period's refill.
    bound = 10 if cls is SlidingLog else 20
    assert 10 <= _admitted_in_any_period(times, 5) <= bound


def test_bucket4j_tiers(r: redis.Redis) -> None:
    """Bucket4J tiers: user 1 gets 10 a minute, user 2 gets 20; the 11th differs."""
    tiers = {"user:1": 10, "user:2": 20}
    bucket = TokenBucket(r, limit=10, period=60, lookup=tiers.get)
    for user in tiers:
        assert all(bucket.allow(user).allowed for _ in range(10))
    eleventh = {user: bucket.allow(user) for user in tiers}
    assert not eleventh["user:1"].allowed and eleventh["user:1"].retry_after > 0
    assert eleventh["user:2"].allowed and eleventh["user:2"].remaining == 9


def test_lookup_can_change_period_and_burst(r: redis.Redis) -> None:
    """A lookup returning Rate(limit, period, burst) overrides all three per key."""
    clock = Clock()
    lim = GCRA(r, limit=100, period=1, clock=clock, lookup={"slow": Rate(1, 60)}.get)
    assert lim.allow("slow").allowed and not lim.allow("slow").allowed
    assert lim.allow("slow").retry_after == pytest.approx(60)
    assert all(lim.allow("fast").allowed for _ in range(100))
    with pytest.raises(ValueError, match=r"lookup\('x'\) limit=0"):
        GCRA(r, limit=5, period=1, lookup=lambda key: 0).allow("x")


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_batch_matches_single_calls(r: redis.Redis, cls: type[Limiter]) -> None:
    """allow_many decides like one allow per key, in order, repeats included."""
    clock = Clock()
    keys = ["a", "b", "a", "c", "a", "a", "b"]
    batch = cls(r, limit=3, period=10, clock=clock, prefix="batch")
    single = cls(r, limit=3, period=10, clock=clock, prefix="single")
    assert batch.allow_many(keys) == [single.allow(k) for k in keys]
    assert batch.allow_many([]) == []


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_survives_script_flush(r: redis.Redis, cls: type[Limiter]) -> None:
    """After SCRIPT FLUSH, single and batch calls reload the script and go on."""
    lim = cls(r, limit=3, period=10)
    lim.allow("u")
    r.script_flush()
    assert lim.allow("u").remaining == 1
    r.script_flush()
    assert [d.allowed for d in lim.allow_many(["u", "u"])] == [True, False]


def test_tutorial_window_is_a_fixed_window(r: redis.Redis) -> None:
    """The Node.js Lua "token bucket" admits 5 then refuses, and has a TTL."""
    lim = TutorialWindow(r, limit=5, window=60)
    assert [lim.allow("ip:1") for _ in range(6)] == [True] * 5 + [False]
    assert 0 < r.ttl("ip:1") <= 60


def test_refreshed_expire_locks_a_steady_client_out(r: redis.Redis) -> None:
    """The intro IP limiter: a client never pausing ttl seconds is refused for good."""
    answers = [incr_refresh_expire(r, "ip:2", ttl=1) for _ in range(16)]
    assert answers[10] == "about-to-rate-limit" and answers[15] == "rate-limited"
    deadline = time.monotonic() + 2.5  # 2.5 ttl's worth of steady traffic
    while time.monotonic() < deadline:
        assert incr_refresh_expire(r, "ip:2", ttl=1) == "rate-limited"
        time.sleep(0.2)
    time.sleep(1.1)  # one ttl of silence
    assert incr_refresh_expire(r, "ip:2", ttl=1) == "ok"


def test_get_then_incr_is_exact_alone(r: redis.Redis) -> None:
    """The two-command limiter is right with one client (its flaw is concurrency)."""
    assert sum(get_then_incr(r, "k", 5, 60) for _ in range(8)) == 5


def test_get_then_incr_races_when_interleaved(r: redis.Redis, redis_url: str) -> None:
    """Another client's request between GET and INCR: both admitted, limit exceeded."""
    other = labkit.connect(redis_url)
    try:
        r.set("k", 4)
        inner: list[bool] = []

        def other_request() -> None:
            inner.append(get_then_incr(other, "k", 5, 60))

        outer = get_then_incr(r, "k", 5, 60, between=other_request)
        assert outer and inner == [True] and r.get("k") == "6"
    finally:
        other.close()


@pytest.fixture(scope="module")
def contention(redis_url: str) -> Iterator[Contention]:
    """16 worker processes (spawn), each with its own client to the test server."""
    with Contention(redis_url, processes=16) as pool:
        yield pool


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_exact_under_16_processes(
    r: redis.Redis, contention: Contention, algorithm: str
) -> None:
    """16 processes x 100 attempts, limit 50 per hour: exactly 50, three trials."""
    admitted = [
        contention.run(algorithm, f"trial:{trial}", attempts=100, limit=50, period=3600)
        for trial in range(3)
    ]
    assert admitted == [50, 50, 50]


def test_contention_rejects_unknown_algorithm(contention: Contention) -> None:
    """An unknown algorithm name is refused with the list of known ones."""
    with pytest.raises(ValueError, match=f"algorithm='nope'.*{NAIVE}"):
        contention.run("nope", "k")


def test_traffic_is_seeded_and_keeps_its_mean_rate() -> None:
    """Same seed, same trace; the mean rate holds with or without burstiness."""
    a = traffic(5.0, 200, burstiness=0.7, seed=1)
    assert np.array_equal(a, traffic(5.0, 200, burstiness=0.7, seed=1))
    assert np.all(np.diff(a) >= 0) and a[0] >= 0 and a[-1] < 200
    for burstiness in (0.0, 0.7):
        n = traffic(5.0, 200, burstiness=burstiness, seed=2).size
        assert 800 < n < 1200


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rate": 0}, "rate=0"),
        ({"seconds": -1}, "seconds=-1"),
        ({"burstiness": 1}, "burstiness=1"),
    ],
)
def test_traffic_bad_input(kwargs: dict[str, Any], named: str) -> None:
    """Out-of-range trace parameters raise ValueError naming them."""
    args = {"rate": 1.0, "seconds": 10.0} | kwargs
    with pytest.raises(ValueError, match=named):
        traffic(**args)


def test_simulate_and_trailing_count(r: redis.Redis) -> None:
    """simulate replays a trace exactly and leaves no key; trailing counts add up."""
    times = np.array([0.0, 0.1, 0.2, 0.3, 10.0, 10.1])
    allowed = simulate(r, SlidingLog, times, limit=2, period=10)
    assert allowed.tolist() == [True, True, False, False, True, True]
    assert r.dbsize() == 0
    t, counts = admitted_per_period(times, allowed, 10)
    assert t.tolist() == [0.0, 0.1, 10.0, 10.1] and counts.tolist() == [1, 2, 2, 2]


def test_compare_and_peak(r: redis.Redis) -> None:
    """compare replays one trace per algorithm; peak is the trailing maximum."""
    times, got = compare(
        r, ["gcra", "sliding_log", "gcra"], rate=2, burstiness=0.5, limit=5, period=10
    )
    assert list(got) == ["gcra", "sliding_log"] and r.dbsize() == 0
    assert np.array_equal(times, traffic(2, 120, burstiness=0.5, seed=7))
    assert peak(times, got["sliding_log"], 10) == 5 < peak(times, got["gcra"], 10)
    assert peak([], np.array([], dtype=bool), 10) == 0
    with pytest.raises(ValueError, match="'nope'"):
        compare(r, ["nope"], rate=1, burstiness=0, limit=1, period=1)


def test_plots_draw(r: redis.Redis) -> None:
    """Each rate-limit plot returns a figure with the expected axes content."""
    times = traffic(2.0, 30, seed=0)
    ok = simulate(r, GCRA, times, limit=5, period=10)
    figs = [
        trailing_admitted(
            {"gcra": admitted_per_period(times, ok, 10)}, limit=5, period=10
        ),
        decision_timeline(
            times, {"gcra": ok}, peaks={"gcra": peak(times, ok, 10)}, period=10
        ),
        burst_curves({"gcra": (times, ok)}, rate=0.5),
    ]
    memory = log_memory({8: 300, 16: 560, 24: 2000}, threshold=16)
    assert memory.axes[0].get_xlabel() == "limit (entries in the log)"
    plt.close(memory)
    for fig in figs:
        assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "seconds"
        plt.close(fig)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_simulate_decides_like_allow(r: redis.Redis, cls: type[Limiter]) -> None:
    """A replay in one round trip decides like one allow() per request."""
    times = traffic(3.0, 40, burstiness=0.5, seed=4)
    clock = Clock()
    lim = cls(r, limit=6, period=5, clock=clock)
    one_by_one = []
    for t in times:
        clock.now = ORIGIN + float(t)
        one_by_one.append(lim.allow("u").allowed)
    assert simulate(r, cls, times, limit=6, period=5).tolist() == one_by_one
    assert r.dbsize() == 1  # only the one-by-one key; the replay deleted its own


def test_simulate_many_and_skew(r: redis.Redis) -> None:
    """Several traces in one call match single replays; skew moves the clock."""
    a, b = traffic(2.0, 30, seed=1), traffic(2.0, 30, seed=2)
    both = simulate_many(r, FixedWindow, [a, b], limit=5, period=10)
    assert [x.tolist() for x in both] == [
        simulate(r, FixedWindow, t, limit=5, period=10).tolist() for t in (a, b)
    ]
    steady = np.arange(0, 30, 0.5)
    shifted = simulate(r, FixedWindow, steady + 3, limit=5, period=10)
    skewed = simulate(r, FixedWindow, steady, limit=5, period=10, skew=[3] * 60)
    assert skewed.tolist() == shifted.tolist()
    assert simulate_many(r, GCRA, [], limit=1, period=1) == []
    assert r.dbsize() == 0


def test_worst_case_search(r: redis.Redis) -> None:
    """The search reaches the proven bounds at small sizes, and its trace replays."""
    fixed = worst_case(r, FixedWindow, limit=3, period=10, stop_at=5, steps=200)
    log = worst_case(r, SlidingLog, limit=3, period=10, steps=5)
    assert (fixed.peak, log.peak) == (5, 3) and log.steps == 5
    again = simulate(r, FixedWindow, fixed.times, limit=3, period=10)
    assert again.tolist() == fixed.allowed.tolist()
    assert peak(fixed.times, again, 10) == 5 == fixed.history[-1]
    assert r.dbsize() == 0
    with pytest.raises(ValueError, match="chains=0"):
        worst_case(r, GCRA, limit=3, period=10, chains=0)


def test_worst_case_search_from_a_given_start(r: redis.Redis) -> None:
    """From a paced start below every bound, with no stop, it climbs to the bound."""
    paced = np.arange(0, 30, 2.5)  # at most 4 in any 10 s
    found = worst_case(r, FixedWindow, limit=3, period=10, start=paced, steps=300)
    assert found.history[0] == 3 and found.steps == 300
    assert found.peak == max(found.history) == 5  # 2 * limit - 1, and no more
    with pytest.raises(ValueError, match="start"):
        worst_case(r, GCRA, limit=3, period=10, start=[-1.0, 2.0])
    with pytest.raises(ValueError, match="start"):
        worst_case(r, GCRA, limit=3, period=10, start=[])


def test_expire_nx_fix_is_a_window(r: redis.Redis) -> None:
    """EXPIRE NX in the same MULTI: the expiry is set once, not re-armed."""
    assert [incr_expire_nx(r, "ip:3", ttl=60) for _ in range(16)][-1] == "rate-limited"
    first = r.pttl("ip:3")
    time.sleep(0.05)
    incr_expire_nx(r, "ip:3", ttl=60)
    assert 0 < r.pttl("ip:3") < first <= 60_000


@pytest.mark.parametrize("cls", [FixedWindow, SlidingWindow], ids=ids)
def test_window_expiry_is_the_window_end(r: redis.Redis, cls: type[Limiter]) -> None:
    """Within a window only the count changes: the expiry set when the window
    was first written stays (the window's end), it is not pushed later."""
    clock = Clock(1_000_020.0)  # a whole number of periods: window start
    lim = cls(r, limit=10, period=60, clock=clock)
    lim.allow("u")
    first = r.pttl(lim.key("u"))
    time.sleep(0.05)
    clock.now += 30
    assert lim.allow("u").remaining < 9
    assert r.pttl(lim.key("u")) < first
    clock.now += 40  # the next window, 10 s in: the key is rewritten, expiry re-armed
    assert lim.allow("u").allowed
    rearmed = 60_000 if cls is FixedWindow else 110_000  # to the (next) window's end
    assert abs(r.pttl(lim.key("u")) - rearmed) < 1_000


# --- allow_many: one script call per batch ---------------------------------------


def _evalsha_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_batch_is_one_script_call(r: redis.Redis, cls: type[Limiter]) -> None:
    """100 keys, repeats included: one EVALSHA decides them all, as allow() would."""
    keys = [f"user:{i % 40}" for i in range(100)]
    clock = Clock()
    batch = cls(r, limit=2, period=60, clock=clock, prefix="batch")
    single = cls(r, limit=2, period=60, clock=clock, prefix="single")
    for lim in (batch, single):  # load both scripts first
        lim.allow("warm-up")
    before = _evalsha_calls(r)
    got = batch.allow_many(keys)
    assert _evalsha_calls(r) - before == 1
    assert got == [single.allow(k) for k in keys]
    assert [d.allowed for d in got] == [True] * 80 + [False] * 20


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_batch_on_server_time_matches_single_calls(
    r: redis.Redis, cls: type[Limiter]
) -> None:
    """Without a clock: the same allowed and remaining as one allow() per key
    (a long period, so the moments between the calls change nothing else)."""
    keys: list[str | int] = ["a", "b", "a", "a", "c", "a", "b", 7, "a:b", "%"]
    batch = cls(r, limit=3, period=3600, prefix="batch")
    single = cls(r, limit=3, period=3600, prefix="single")
    got = batch.allow_many(keys, cost=1)
    want = [single.allow(k) for k in keys]
    assert [(d.allowed, d.remaining) for d in got] == [
        (d.allowed, d.remaining) for d in want
    ]
    assert all(0 < d.reset_after <= 7200 for d in got)
    assert all((d.retry_after == 0) == d.allowed for d in got)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_batch_with_cost_lookup_and_chunks(r: redis.Redis, cls: type[Limiter]) -> None:
    """Per-key rates (a lookup), a cost of 2 and more keys than one call takes
    (several calls in one round trip) still decide as allow() does."""
    clock = Clock()
    rates: dict[str, int | Rate] = {"gold": 9, "silver": Rate(4, 20)}
    tiers = rates.get
    keys = ["gold"] * 300 + ["silver"] * 300 + ["bronze"] * 1100 + ["gold"] * 5
    batch = cls(r, limit=5, period=10, clock=clock, lookup=tiers, prefix="batch")
    single = cls(r, limit=5, period=10, clock=clock, lookup=tiers, prefix="single")
    for lim in (batch, single):  # load the script first
        lim.allow("warm-up")
    before = _evalsha_calls(r)
    got = batch.allow_many(keys, cost=2)
    assert _evalsha_calls(r) - before == 5  # gold, silver, bronze (1,000 + 100), gold
    assert got == [single.allow(k, cost=2) for k in keys]


def _zero_for_late(key: str) -> int | None:
    return 0 if key == "late" else None


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize(
    ("kwargs", "cost", "error", "named"),
    [
        (dict, 6, ValueError, "cost=6"),
        (dict, 0, ValueError, "cost=0"),
        (lambda: {"lookup": _zero_for_late}, 1, ValueError, "limit=0"),
        (
            lambda: {"clock": iter([1e3, 1e3, math.nan]).__next__},
            1,
            ValueError,
            "clock()=",
        ),
    ],
    ids=["cost", "zero cost", "lookup", "clock"],
)
def test_batch_bad_input_writes_nothing(
    r: redis.Redis, cls: type[Limiter], kwargs: Any, cost: int, error: type, named: str
) -> None:
    """A bad cost, or a bad lookup or clock answer for a later key: refused
    before anything is sent, so no key of the batch was decided."""
    lim = cls(r, limit=5, period=10, **kwargs())
    with pytest.raises(error, match=re.escape(named)):
        lim.allow_many(["a", "b", "late"], cost=cost)
    assert r.dbsize() == 0


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_batch_foreign_key_named_others_decided(
    r: redis.Redis, cls: type[Limiter]
) -> None:
    """A key of the batch holding something else: WrongTypeError naming it,
    raised after the others were decided; that key is left as it was."""
    from labkit.errors import WrongTypeError

    lim = cls(r, limit=5, period=10)
    r.set(lim.key("bad"), "not a limiter")
    r.hset(lim.key("odd"), "someone", "else")
    with pytest.raises(WrongTypeError) as info:
        lim.allow_many(["a", "bad", "b", "odd", "a"])
    assert info.value.key == lim.key("bad")
    assert r.get(lim.key("bad")) == "not a limiter"
    assert r.hgetall(lim.key("odd")) == {"someone": "else"}
    assert lim.allow("a").remaining == 2 and lim.allow("b").remaining == 3
