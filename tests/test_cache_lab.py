"""labkit.lab.caching: the notebooks' experiments, references and HTTP harness."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import redis

from labkit.cache import ClientSideCache
from labkit.lab.caching import (
    App,
    belady_hit_ratio,
    commands_run,
    drive,
    eviction_trial,
    lfu_hit_ratio,
    lru_hit_ratio,
    stale_reads,
    stampede_trial,
    zipf_keys,
)


def test_belady_beats_lru_on_a_cycle() -> None:
    """Three keys in a cycle, room for two: LRU never hits, the optimum often does."""
    cycle = np.array([0, 1, 2] * 8)
    assert lru_hit_ratio(cycle, 2) == 0.0
    assert belady_hit_ratio(cycle, 2) == pytest.approx(0.5)


def test_exact_lfu_keeps_the_frequent_key() -> None:
    """Room for two: a key read three times survives two one-offs under LFU, not LRU."""
    trace = np.array([0, 0, 0, 1, 2, 0])
    assert lru_hit_ratio(trace, 2) == 0.0
    assert lfu_hit_ratio(trace, 2) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="capacity=0"):
        lfu_hit_ratio(trace, 0)


def test_offline_references_agree_when_everything_fits() -> None:
    """With room for every key, both miss only first requests; otherwise MIN >= LRU."""
    trace = zipf_keys(200, 2000, seed=3)
    assert lru_hit_ratio(trace, 200) == belady_hit_ratio(trace, 200) > 0.9
    for capacity in (5, 20, 50):
        assert 0 < lru_hit_ratio(trace, capacity) <= belady_hit_ratio(trace, capacity)
        assert 0 < lfu_hit_ratio(trace, capacity) <= belady_hit_ratio(trace, capacity)
    with pytest.raises(ValueError, match="capacity=0"):
        belady_hit_ratio(trace, 0)


def test_commands_run_counts_what_the_block_sent(r: redis.Redis) -> None:
    """The server's command counts over a block, the counter's own INFO excluded."""
    with commands_run(r) as seen:
        r.set("k", 1)
        r.get("k")
        r.get("k")
    assert seen.counts == {"get": 2, "set": 1} and seen.total == 3


def test_app_and_drive_count_every_request() -> None:
    """50 requests from 5 clients all answered; a failing route answers 500."""
    calls: list[int] = []
    lock = threading.Lock()

    def ok() -> dict[str, int]:
        with lock:
            calls.append(1)
        return {"n": len(calls)}

    def broken() -> None:
        raise RuntimeError("boom")

    with App({"/ok": ok, "/broken": broken}) as app:
        result = drive(app.url, "/ok", clients=5, requests=10)
        assert result.statuses == {200: 50} and len(calls) == 50
        assert result.latencies.shape == (50,) and result.requests == 50
        assert drive(app.url, "/broken", clients=1, requests=2).statuses == {500: 2}
        assert drive(app.url, "/nowhere", clients=1, requests=1).statuses == {404: 1}
        assert isinstance(app.errors[0], RuntimeError)
    assert not [t for t in threading.enumerate() if t.name == "labkit-http-app"]


@pytest.mark.parametrize("bad", [0, 501, True, 2.5])
def test_drive_refuses_bad_client_counts(bad: object) -> None:
    """clients= outside 1..500 (or not an int) is refused before anything starts."""
    with pytest.raises((TypeError, ValueError), match="clients="):
        drive("http://127.0.0.1:1", "/", clients=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["none", "lock", "xfetch"])
def test_stampede_trial_reports_costs(r: redis.Redis, mode: str) -> None:
    """Every reader crosses the expiry; the lease loads once, the others up to N."""
    cost = stampede_trial(r, mode, 4, load_seconds=0.01, ttl=0.1)
    assert cost.reads > 4 and cost.commands_per_read >= 1 and cost.p99_ms > 0
    if mode == "lock":
        assert cost.loads in (1, 2) and cost.misses >= 4
    if mode == "none":
        assert cost.loads >= 1 and cost.misses == cost.loads
    assert r.dbsize() == 0


def test_stale_reads_see_the_new_value(r: redis.Redis) -> None:
    """After a write, local reads turn fresh once the invalidation is applied."""
    r.set("city", "Lima")
    with ClientSideCache(r) as local:
        local.get("city")
        ms, stale = stale_reads(local, r, "city", "Oslo", seconds=0.2)
    assert len(ms) == len(stale) > 10 and not stale[-1]
    assert np.all(np.diff(ms) >= 0)


def test_eviction_trial_holds_what_the_budget_allows(r: redis.Redis) -> None:
    """Under a 100 KB budget LRU evicts and refuses nothing; noeviction refuses."""
    trace = zipf_keys(5000, 5000, seed=1)  # about 2.5 MB of distinct 1 KB values
    lru = eviction_trial(r, "allkeys-lru", trace, budget_bytes=100_000, batch=20)
    assert lru.evicted > 0 and lru.write_errors == 0 and 20 < lru.resident < 2000
    full = eviction_trial(r, "noeviction", trace, budget_bytes=100_000, batch=20)
    assert full.evicted == 0 and full.write_errors > 0 and r.dbsize() == 0
