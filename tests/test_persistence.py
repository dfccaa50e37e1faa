"""labkit.lab.persistence: SIGKILL crash tests by policy, AOF files, restarts, costs."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from labkit.lab.errors import PowerCutUnavailableError
from labkit.lab.persistence import (
    POLICIES,
    AofFile,
    CrashResult,
    PowerCutShim,
    aof_files,
    crash_test,
    fill_to_limit,
    fork_cost,
    formats_test,
    fsync_counts,
    fsync_log,
    load_random,
    lua_over_limit,
    os_crash_exposure,
    policy_config,
    power_cut,
    power_loss_test,
    restart_time,
    rewrite_aof,
    series_lua,
    set_fsync_delay,
    shim_unavailable_reason,
    write_throughput,
    written,
)
from labkit.server import Server, no_retry, running_servers

# These tests start, kill and rewire embedded servers (see conftest TIER).
pytestmark = pytest.mark.embedded


def _honest(result: CrashResult) -> bool:
    """acked - lost <= recovered <= acked - lost + in_flight, nothing corrupted."""
    kept = result.acked - result.lost
    return result.consistent and kept <= result.recovered <= kept + result.in_flight


@pytest.mark.parametrize("run", range(3))
@pytest.mark.parametrize("policy", ["aof-always", "aof-no"])
def test_aof_loses_no_acknowledged_write(policy: str, run: int) -> None:
    """Under AOF always/no a SIGKILL mid-stream loses zero acknowledged writes."""
    result = crash_test(policy, writes=600, kill_at=300)
    assert result.acked >= 300 and result.acked < 600  # killed mid-stream
    assert result.lost == 0 and _honest(result)
    assert result.acked <= result.recovered <= result.acked + result.in_flight


@pytest.mark.parametrize("run", range(3))
@pytest.mark.parametrize("policy", ["aof-everysec", "rdb+aof"])
def test_everysec_loses_at_most_the_held_back_tail(policy: str, run: int) -> None:
    """Under everysec a SIGKILL loses nothing, or only the newest acknowledged writes.

    Usually nothing: the AOF buffer is written before the replies go out. But
    while the previous second's background fsync still runs, the server holds
    the write back for up to 2 s and replies anyway, so a kill then loses the
    newest writes (seen once in CI, with the disk busy). What can never happen
    is a hole: an older write missing while a newer one survived.
    """
    result = crash_test(policy, writes=600, kill_at=300)
    assert result.acked >= 300 and _honest(result)
    assert result.lost == 0 or result.lost_newest
    print(f"{policy}: acked {result.acked}, lost {result.lost}")


def test_rdb_loses_the_writes_after_the_last_snapshot() -> None:
    """With RDB only, the writes after the snapshot are lost, and counted."""
    result = crash_test("rdb", writes=3000, kill_at=1500)
    assert result.acked >= 1500
    assert 0 < result.recovered < result.acked  # a snapshot, then more writes
    assert result.lost == result.acked - result.recovered > 0
    assert _honest(result)


def test_no_persistence_loses_everything() -> None:
    """Without persistence nothing comes back: lost == acked."""
    result = crash_test("none", writes=500)
    assert result.recovered == 0 and result.lost == result.acked > 0


def test_restarted_data_is_identical_to_what_was_acknowledged() -> None:
    """After SIGKILL + restart under AOF, every key and value is as written."""
    # appendfsync always: under everysec a write held back during a slow
    # background fsync could be lost to the kill (see crash_test).
    with Server(config=policy_config("aof-always")) as srv:
        r = srv.client(retry=no_retry())
        r.set("s", "text")
        r.incrby("n", 41)
        r.hset("h", mapping={"a": "1", "b": "2"})
        r.rpush("l", "x", "y", "x")
        r.zadd("z", {"m": 1.5, "n": -2})
        r.sadd("set", "p", "q")
        r.set("gone", "1")
        r.delete("gone")
        expected = {
            "s": "text",
            "n": "41",
            "h": {"a": "1", "b": "2"},
            "l": ["x", "y", "x"],
            "z": [("n", -2.0), ("m", 1.5)],
            "set": {"p", "q"},
        }
        srv.kill()
        srv.restart()
        r = srv.client()
        got = {
            "s": r.get("s"),
            "n": r.get("n"),
            "h": r.hgetall("h"),
            "l": r.lrange("l", 0, -1),
            "z": r.zrange("z", 0, -1, withscores=True),
            "set": r.smembers("set"),
        }
        assert got == expected and sorted(r.keys()) == sorted(expected)


@pytest.mark.parametrize("policy", ["aof", "", "AOF-ALWAYS", None])
def test_bad_policy_is_refused_listing_the_allowed_ones(policy: object) -> None:
    """An unknown policy raises ValueError naming it and every allowed policy."""
    with pytest.raises(ValueError, match="policy=") as info:
        crash_test(policy, writes=10)  # type: ignore[arg-type]
    assert all(repr(p) in str(info.value) for p in POLICIES)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"writes": 1}, "writes=1"),
        ({"writes": 10, "kill_at": 10}, "kill_at=10"),
        ({"writes": 10, "kill_at": 0}, "kill_at=0"),
        ({"writes": 10, "rate": 0}, "rate=0"),
    ],
)
def test_bad_crash_arguments(kwargs: dict[str, Any], match: str) -> None:
    """Counts out of range are refused before any server starts."""
    with pytest.raises(ValueError, match=match):
        crash_test("none", **kwargs)


def test_rewrite_leaves_a_new_base_and_an_empty_incremental_file() -> None:
    """BGREWRITEAOF turns 500 overwrites of one key into a tiny base file."""
    with Server(config=policy_config("aof-everysec")) as srv:
        r = srv.client()
        for i in range(500):
            r.set("counter", i)
        before, after = rewrite_aof(r, srv.data_dir)

        def kinds(files: list[AofFile]) -> list[str]:
            return sorted(f.kind for f in files)

        def incr(files: list[AofFile]) -> AofFile:
            return next(f for f in files if f.kind == "incr")

        assert kinds(before) == kinds(after) == ["base", "incr", "manifest"]
        assert incr(before).bytes > 10_000 and incr(after).bytes == 0
        assert {f.name for f in before} != {f.name for f in after}
        assert aof_files(srv.data_dir) == after
        srv.kill()
        srv.restart()
        assert srv.client().get("counter") == "499"


@pytest.mark.parametrize(
    ("policy", "rewrite"),
    [("rdb", False), ("aof-everysec", False), ("aof-everysec", True)],
)
def test_restart_brings_back_every_key(policy: str, rewrite: bool) -> None:
    """A crash and restart restores the whole dataset from RDB, AOF or rewritten AOF."""
    result = restart_time(policy, 5000, rewrite=rewrite)
    assert result.restored == 5000 and result.disk_bytes > 0 and result.seconds > 0


def test_write_throughput_measures_every_policy() -> None:
    """write_throughput returns a positive rate per requested policy."""
    rates = write_throughput(["none", "aof-everysec"], seconds=0.2, rounds=2)
    assert set(rates) == {"none", "aof-everysec"}
    assert all(v > 0 for v in rates.values())


def test_os_crash_exposure_is_the_documented_window() -> None:
    """The modelled OS-crash window: 0 for always, 1 s plus any stall for
    everysec, save interval (+1 s, whole seconds) plus BGSAVE time for RDB,
    all for none."""
    assert os_crash_exposure("aof-always", 1000).writes_at_risk == 0
    assert os_crash_exposure("aof-everysec", 1000).writes_at_risk == 1000
    assert os_crash_exposure("aof-everysec", 100, stall_seconds=5).window_s == 6
    assert (
        os_crash_exposure("rdb", 10, save_seconds=60, bgsave_seconds=2).window_s == 63
    )
    assert os_crash_exposure("none", 1000).writes_at_risk == -1
    assert os_crash_exposure("aof-no", 1000).window_s > 2
    with pytest.raises(ValueError, match="policy='fsync'"):
        os_crash_exposure("fsync", 1000)


def test_killed_server_refuses_connections_until_restarted() -> None:
    """The kill is real: the client fails at once (no retry) until restart."""
    with Server(config=policy_config("aof-everysec")) as srv:
        r = srv.client(retry=no_retry())
        r.set("k", "v")
        srv.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            r.get("k")
        srv.restart()
        assert srv.client().get("k") == "v"


def test_noeviction_refuses_and_lru_evicts_model_state() -> None:
    """At the limit noeviction refuses writes; allkeys-lru evicts without error."""
    refused = fill_to_limit("noeviction", series=60)
    evicted = fill_to_limit("allkeys-lru", series=60)
    assert refused.refused > 0 and refused.evicted_keys == 0
    assert evicted.refused == 0 and evicted.evicted_keys > 0 and evicted.intact < 60
    assert refused.series_bytes > 100 * 8  # 100 points of at least a score each


def test_unflagged_script_writes_past_the_memory_limit() -> None:
    """Without #!lua the add script is never refused and memory runs past maxmemory."""
    flagged = lua_over_limit(series_lua(), writes=1500)
    unflagged = lua_over_limit(series_lua(flagged=False), writes=1500)
    assert unflagged.accepted == 1499 and unflagged.over_bytes > 10_000
    assert flagged.accepted < 1499 and flagged.over_bytes < 1024
    with pytest.raises(ValueError, match="policy=''"):
        fill_to_limit("")


def test_written_returns_once_the_aof_buffer_is_in_the_file() -> None:
    """written(): WAITAOF where the server has it, else an empty AOF buffer."""
    with Server(config=policy_config("aof-everysec")) as srv:
        r = srv.client()
        for i in range(100):
            r.set(f"k{i}", i)
        written(r)
        assert int(r.info("persistence")["aof_buffer_length"]) == 0
        srv.kill()
        srv.restart()
        assert srv.client().dbsize() == 100


def test_rewrite_opens_the_new_incremental_file_before_the_child_finishes() -> None:
    """While BGREWRITEAOF runs, the manifest already lists a new, empty incr
    file, where the writes made meanwhile go (Redis 7's multi-part AOF)."""
    config = {**policy_config("aof-everysec"), "auto-aof-rewrite-percentage": "0"}
    with Server(config=config) as srv:
        r = srv.client()
        for i in range(300):
            r.set(f"k{i}", i)
        r.config_set("rdb-key-save-delay", 5000)  # 5 ms per key in the child
        r.bgrewriteaof()
        assert r.info("persistence")["aof_rewrite_in_progress"] == 1
        during = aof_files(srv.data_dir)
        r.set("during", "1")
        r.config_set("rdb-key-save-delay", 0)
        incr = [f.name for f in during if f.kind == "incr"]
        assert incr == ["appendonly.aof.1.incr.aof", "appendonly.aof.2.incr.aof"]
        assert next(f for f in during if f.name == incr[1]).bytes == 0


def test_aof_grows_with_overwrites_while_rdb_does_not() -> None:
    """One write per key: AOF/RDB ~1.2 with random values; k overwrites make
    the AOF k times larger and the RDB no larger."""
    one = formats_test(2000, overwrites=1, repeats=1)
    four = formats_test(2000, overwrites=4, repeats=1)
    assert four.rdb_bytes == one.rdb_bytes
    assert 1.0 < one.ratio < 1.5 and 3.9 < four.aof_bytes / one.aof_bytes < 4.1
    assert four.ratio > 3 * one.ratio


def test_rdbcompression_shrinks_repeated_values_not_random_ones() -> None:
    """LZF shrinks a repeated byte to almost nothing; random bytes stay as they are."""
    rep = formats_test(2000, values="repeated", repeats=1)
    raw = formats_test(2000, values="repeated", rdbcompression=False, repeats=1)
    rnd = formats_test(2000, values="random", repeats=1)
    assert rep.rdb_bytes * 3 < raw.rdb_bytes
    assert abs(rnd.rdb_bytes - raw.rdb_bytes) < 0.02 * raw.rdb_bytes


def test_fork_cost_counts_copy_on_write_from_concurrent_writes() -> None:
    """Writes during BGSAVE make the child's copy-on-write larger than none do."""
    busy = fork_cost(50_000)
    idle = fork_cost(50_000, concurrent_writes=False)
    assert busy.writes_during > 0 and idle.writes_during == 0
    assert busy.cow_bytes > idle.cow_bytes and busy.fork_usec > 0
    aof = fork_cost(20_000, command="BGREWRITEAOF", fork_repeats=2)
    assert aof.cow_bytes > 0 and aof.command == "BGREWRITEAOF" and aof.fork_usec > 0


# --- power loss (the LD_PRELOAD shim) ---------------------------------------


@pytest.fixture(scope="module")
def shim() -> Iterator[PowerCutShim]:
    """The power-cut shim, built once for this module (skip where it cannot be)."""
    reason = shim_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with PowerCutShim() as built:
        yield built
    assert built.dir is None


def test_shim_records_every_fsync_and_the_cut_keeps_only_those(
    shim: PowerCutShim,
) -> None:
    """appendfsync always: one fdatasync per write, and a power cut loses none;
    appendfsync no: no fsync of the AOF, and a power cut loses them all."""
    for fsync, survivors in (("always", 50), ("no", 0)):
        with shim.server(policy_config(f"aof-{fsync}")) as srv:
            r = srv.client()
            mark = len(fsync_log(srv))
            for i in range(50):
                r.set(f"k{i}", i)
            counts = fsync_counts(srv, since=mark)
            assert counts["appendonly.aof.1.incr.aof"] == (
                50 if fsync == "always" else 0
            )
            cut = power_cut(srv)
            assert not srv.running
            incr = next(c for c in cut if c.name.endswith(".incr.aof"))
            assert incr.dropped == (0 if fsync == "always" else incr.before)
            srv.restart()
            assert srv.client().dbsize() == survivors


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        ("aof-always", lambda r: r.power.lost == 0 and r.fsyncs >= r.acked),
        # A kill loses nothing, or (a slow background fsync) only the newest
        # writes: those the server reported held back, or acked after that.
        (
            "aof-everysec",
            lambda r: r.power.lost < r.acked and r.kill_may_lose >= r.kill.lost,
        ),
        ("aof-no", lambda r: r.power.lost == r.acked and r.kill.lost == 0),
        ("rdb", lambda r: 0 < r.power.lost == r.kill.lost < r.acked),
    ],
)
def test_power_loss_per_policy(
    shim: PowerCutShim, policy: str, check: Callable[[Any], bool]
) -> None:
    """A power cut loses what each policy left unsynced; nothing else, no hole."""
    result = power_loss_test(shim, policy, writes=3000, kill_at=300, rate=200)
    assert check(result), result
    for outcome in (result.kill, result.power):
        assert outcome.mismatched == 0 and outcome.lost_newest
        assert outcome.extra <= result.in_flight


def test_stalled_fsync_makes_everysec_lose_to_a_kill_and_more_to_a_power_cut(
    shim: PowerCutShim,
) -> None:
    """fsync stuck: writes are held back (and acknowledged) up to 2 s at a time,
    so a SIGKILL loses the held ones; a power cut loses everything since the
    stall began; aof_delayed_fsync counts the 2 s give-ups."""
    result = power_loss_test(
        shim, "aof-everysec", writes=3000, kill_at=700, rate=200, fsync_delay=30
    )
    assert result.delayed_fsync >= 1 and result.held_back > 0
    assert 0 < result.kill.lost <= result.kill_may_lose
    assert result.kill.lost < result.power.lost <= result.acked
    assert result.kill.lost_newest and result.power.lost_newest


def test_set_fsync_delay_is_atomic_and_clearable(shim: PowerCutShim) -> None:
    """The delay file holds whole ms; 0 removes it."""
    with shim.server() as srv:
        set_fsync_delay(srv, 0.25)
        assert (srv.data_dir / "powercut.delay").read_text() == "250"
        set_fsync_delay(srv, 0)
        assert not (srv.data_dir / "powercut.delay").exists()


def test_shim_refuses_a_binary_it_cannot_reach(tmp_path: Any) -> None:
    """A script as the binary is not an ELF file: a clear error, nothing built."""
    fake = tmp_path / "server.sh"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(stat.S_IRWXU)
    with pytest.raises(PowerCutUnavailableError, match="not an ELF") as info:
        PowerCutShim(str(fake)).build()
    assert info.value.reason.endswith("not an ELF binary")


def test_shim_without_a_compiler_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """CC naming no compiler: the reason says so (the notebook cells skip on it)."""
    monkeypatch.setenv("CC", "no-such-cc-labkit")
    assert "no C compiler" in shim_unavailable_reason()
    with pytest.raises(PowerCutUnavailableError, match="no C compiler"):
        PowerCutShim().build()


def test_fsync_log_of_a_server_without_the_shim_is_empty() -> None:
    """Without the shim nothing is recorded, and nothing pretends otherwise."""
    with Server(config=policy_config("aof-always")) as srv:
        srv.client().set("k", "v")
        assert fsync_log(srv) == [] and not fsync_counts(srv)


# --- bad input for the lab harness ------------------------------------------


BAD_HARNESS: list[tuple[str, Callable[[], Any], type, str]] = [
    (
        "crash writes bool",
        lambda: crash_test("none", writes=True),
        TypeError,
        "writes=True",
    ),
    (
        "crash writes huge",
        lambda: crash_test("none", writes=10**9),
        ValueError,
        "writes=1000000000",
    ),
    (
        "crash kill_at float",
        lambda: crash_test("none", kill_at=5.0),  # type: ignore[arg-type]
        TypeError,
        "kill_at=5.0",
    ),
    (
        "crash rate nan",
        lambda: crash_test("none", rate=math.nan),
        ValueError,
        "rate=nan",
    ),
    (
        "crash rate inf",
        lambda: crash_test("none", rate=math.inf),
        ValueError,
        "rate=inf",
    ),
    ("crash timeout 0", lambda: crash_test("none", timeout=0), ValueError, "timeout=0"),
    (
        "crash policy list",
        lambda: crash_test(["aof-always"]),  # type: ignore[arg-type]
        ValueError,
        "policy=['aof-always']",
    ),
    (
        "power shim str",
        lambda: power_loss_test("shim", "aof-no"),  # type: ignore[arg-type]
        TypeError,
        "shim='shim'",
    ),
    ("restart keys neg", lambda: restart_time("rdb", -1), ValueError, "keys=-1"),
    (
        "restart repeats 0",
        lambda: restart_time("rdb", 10, repeats=0),
        ValueError,
        "repeats=0",
    ),
    ("restart policy", lambda: restart_time("aof", 10), ValueError, "policy='aof'"),
    (
        "throughput str",
        lambda: write_throughput("aof-always"),
        TypeError,
        "policies='aof-always'",
    ),
    (
        "throughput bad",
        lambda: write_throughput(["fsync"]),
        ValueError,
        "policy='fsync'",
    ),
    (
        "throughput secs nan",
        lambda: write_throughput(seconds=math.nan),
        ValueError,
        "seconds=nan",
    ),
    (
        "throughput bytes 0",
        lambda: write_throughput(value_bytes=0),
        ValueError,
        "value_bytes=0",
    ),
    (
        "exposure rate neg",
        lambda: os_crash_exposure("rdb", -5),
        ValueError,
        "write_rate=-5",
    ),
    (
        "exposure rate nan",
        lambda: os_crash_exposure("rdb", math.nan),
        ValueError,
        "write_rate=nan",
    ),
    (
        "exposure save 0",
        lambda: os_crash_exposure("rdb", 1, save_seconds=0),
        ValueError,
        "save_seconds=0",
    ),
    (
        "exposure stall inf",
        lambda: os_crash_exposure("rdb", 1, stall_seconds=math.inf),
        ValueError,
        "stall_seconds=inf",
    ),
    ("formats k 0", lambda: formats_test(10, overwrites=0), ValueError, "overwrites=0"),
    (
        "formats values",
        lambda: formats_test(10, values="zeros"),
        ValueError,
        "values='zeros'",
    ),
    (
        "formats compression",
        lambda: formats_test(10, rdbcompression="yes"),  # type: ignore[arg-type]
        TypeError,
        "rdbcompression='yes'",
    ),
    ("fork keys 0", lambda: fork_cost(0), ValueError, "keys=0"),
    (
        "fork command",
        lambda: fork_cost(10, command="SAVE"),
        ValueError,
        "command='SAVE'",
    ),
    (
        "fork writes",
        lambda: fork_cost(10, concurrent_writes=1),  # type: ignore[arg-type]
        TypeError,
        "concurrent_writes=1",
    ),
    (
        "fork repeats 0",
        lambda: fork_cost(10, fork_repeats=0),
        ValueError,
        "fork_repeats=0",
    ),
    (
        "fork repeats bool",
        lambda: fork_cost(10, fork_repeats=True),
        TypeError,
        "fork_repeats=True",
    ),
    ("shim binary", lambda: PowerCutShim(binary=5), TypeError, "binary=5"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [case[1:] for case in BAD_HARNESS],
    ids=[case[0] for case in BAD_HARNESS],
)
def test_bad_harness_input_is_refused_before_any_server_starts(
    call: Callable[[], Any], error: type, words: str
) -> None:
    """Each bad argument raises naming it and what is allowed; nothing starts."""
    before = set(running_servers(include_default=False))
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value) and "must" in str(info.value)
    assert set(running_servers(include_default=False)) == before


def test_bad_input_to_the_shim_helpers(shim: PowerCutShim) -> None:
    """set_fsync_delay and fsync_log refuse what is not a Server or a duration."""
    with pytest.raises(TypeError, match="server='x'"):
        fsync_log("x")  # type: ignore[arg-type]
    with shim.server() as srv:
        for bad, error in ((-1, ValueError), (math.nan, ValueError), (True, TypeError)):
            with pytest.raises(error, match="seconds="):
                set_fsync_delay(srv, bad)
    assert os.path.isdir(shim.dir)  # type: ignore[arg-type]


def test_load_random_refuses_bad_sizes() -> None:
    """load_random checks its counts before writing."""
    with Server() as srv:
        r = srv.client()
        with pytest.raises(ValueError, match="keys=-1"):
            load_random(r, -1)
        with pytest.raises(ValueError, match="values='text'"):
            load_random(r, 10, values="text")
        assert r.dbsize() == 0
