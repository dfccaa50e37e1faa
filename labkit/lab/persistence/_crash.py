"""Crash tests: stream acknowledged writes, kill or cut the power, count survivors."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import redis

from labkit.core.args import check_int, check_number, check_seconds
from labkit.lab.persistence._policies import policy_config
from labkit.lab.persistence._powercut import (
    CutFile,
    PowerCutShim,
    fsync_log,
    power_cut,
    set_fsync_delay,
)
from labkit.server import Server, no_retry

__all__ = ["CrashResult", "Outcome", "PowerLossResult", "crash_test", "power_loss_test"]

_KEY = "crash:{:06d}"


def _value(i: int) -> str:
    return f"v{i}"


class Outcome(NamedTuple):
    """What came back after one restart.

    Attributes:
        recovered: Stream keys present after the restart.
        lost: Acknowledged writes missing.
        extra: Recovered writes that were never acknowledged (the in-flight
            one may or may not have made it); always <= ``in_flight``.
        mismatched: Recovered keys whose value differs from what was written.
        lost_newest: True when the lost writes, if any, are exactly the
            newest acknowledged ones (no hole), as an AOF replayed in order,
            or a snapshot, loses them.
    """

    recovered: int
    lost: int
    extra: int
    mismatched: int
    lost_newest: bool


@dataclass(frozen=True)
class CrashResult:
    """What one SIGKILL did to one durability policy.

    Attributes:
        policy: The durability policy.
        writes: The stream's cap (the kill comes before it is reached).
        acked: Writes the server acknowledged before it died.
        in_flight: Writes sent but never answered (0 or 1: one connection).
        recovered, lost, extra, mismatched, lost_newest: See :class:`Outcome`.
        stream_s: Seconds from the first write to the kill.
        restart_s: Seconds the restart took (start to first PING answered).
    """

    policy: str
    writes: int
    acked: int
    in_flight: int
    recovered: int
    lost: int
    extra: int
    mismatched: int
    stream_s: float
    restart_s: float
    lost_newest: bool = True

    @property
    def consistent(self) -> bool:
        """No corrupted value, and nothing came back that was never sent."""
        return self.mismatched == 0 and self.extra <= self.in_flight


@dataclass(frozen=True)
class PowerLossResult:
    """One stream of writes, then two endings from the same moment.

    The server runs with the power-cut shim. At the cut it is SIGKILLed and
    its files are copied: a twin server starts on the copy as it is
    (``kill``: what a process crash loses); the files themselves are cut to
    what the fsyncs covered and the server restarts on them (``power``: what
    a power cut loses).

    Attributes:
        policy: The durability policy.
        acked: Writes acknowledged before the cut.
        in_flight: Writes sent but not answered (0 or 1).
        rate: Writes per second the writer aimed at (None: as fast as it can).
        fsync_delay: Seconds each fsync was made to wait (a slow disk).
        fsyncs: fsync/fdatasync calls the server made during the stream (all
            files; the shim's count).
        delayed_fsync: ``aof_delayed_fsync`` just before the cut: how often
            the server stopped waiting for a slow fsync and wrote anyway.
        held_back: ``aof_buffer_length`` just before the cut: bytes of
            acknowledged writes the server held in memory, not yet written.
        stream_s: Seconds from the first write to the cut.
        kill: What came back after the SIGKILL.
        power: What came back after the power cut.
        cut: What the power cut did to each data file.
    """

    policy: str
    acked: int
    in_flight: int
    rate: float | None
    fsync_delay: float
    fsyncs: int
    delayed_fsync: int
    held_back: int
    stream_s: float
    kill: Outcome
    power: Outcome
    cut: list[CutFile] = field(default_factory=list, repr=False)

    @property
    def power_lost_s(self) -> float | None:
        """The power cut's loss in seconds of writes (``power.lost / rate``)."""
        return self.power.lost / self.rate if self.rate else None


class _Writer(threading.Thread):
    """Sends SET crash:<i> v<i> one at a time until the connection dies."""

    def __init__(self, client: redis.Redis, writes: int, rate: float | None) -> None:
        super().__init__(name="labkit-crash-writer", daemon=True)
        self.client = client
        self.writes = writes
        self.interval = 1.0 / rate if rate else 0.0
        self.acked = 0
        self.in_flight = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        for i in range(self.writes):
            if self.interval:
                delay = start + i * self.interval - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    return
            if self.stop.is_set():
                return
            self.in_flight = 1
            try:
                self.client.set(_KEY.format(i), _value(i))
            except redis.exceptions.RedisError as exc:
                self.error = exc  # the kill: this write's fate is unknown
                return
            self.acked, self.in_flight = i + 1, 0


def _wait_for_save_window(client: redis.Redis, every: int) -> None:
    # A save rule "N 1" fires once the server clock is more than N whole
    # seconds past the last save (startup counts as one). Starting the stream
    # after that point makes the first snapshot come within one timer tick
    # (10 ms at hz 100) of the first write, and the next not for N seconds.
    last = int(client.info("persistence")["rdb_last_save_time"])
    time.sleep(max(0.0, last + every + 1.05 - time.time()))


def _check(writes: int, kill_at: int | None, rate: float | None, timeout: float) -> int:
    check_int("writes", writes, min=2, max=10_000_000)
    kill_at = writes // 2 if kill_at is None else kill_at
    check_int("kill_at", kill_at, min=1, max=writes - 1)
    if rate is not None:
        check_number("rate", rate, min=1, max=1_000_000, unit="of writes per second")
    check_seconds("timeout", timeout, max=600)
    return kill_at


def _stream(
    server: Server,
    writes: int,
    kill_at: int,
    rate: float | None,
    timeout: float,
) -> tuple[_Writer, float, redis.Redis]:
    """Run the writer until ``kill_at`` acks (after a snapshot, for RDB)."""
    probe = server.client(retry=no_retry(), socket_timeout=5)
    rule = str(probe.config_get("save").get("save", ""))
    wants_snapshot = rule != ""
    if wants_snapshot:
        _wait_for_save_window(probe, min(int(n) for n in rule.split()[::2]))
    writer = _Writer(
        server.client(retry=no_retry(), socket_timeout=timeout), writes, rate
    )
    start = time.perf_counter()
    writer.start()
    deadline = time.monotonic() + timeout
    snapshot_seen = not wants_snapshot
    while writer.is_alive() and time.monotonic() < deadline:
        if not snapshot_seen:
            info = probe.info("persistence")
            snapshot_seen = (
                info["rdb_saves"] >= 1 and not info["rdb_bgsave_in_progress"]
            )
        if snapshot_seen and writer.acked >= kill_at:
            break
        time.sleep(0.0005)
    return writer, start, probe


def crash_test(
    policy: str,
    writes: int = 2000,
    *,
    kill_at: int | None = None,
    rate: float | None = None,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> CrashResult:
    """SIGKILL a server mid-stream under ``policy`` and count lost acknowledged writes.

    A fresh server is started with the policy's config in a temporary data
    dir. A writer thread sends ``SET crash:<i> v<i>`` one at a time; once
    ``kill_at`` writes are acknowledged the server is SIGKILLed
    (:meth:`Server.kill`), restarted on the same data dir, and every stream
    key is read back. For ``"rdb"`` the kill waits until a snapshot has been
    taken during the stream, so the writes after it are what a crash loses.

    Args:
        policy: One of ``labkit.lab.persistence.POLICIES``.
        writes: Cap on writes sent (2 to 10,000,000).
        kill_at: Acknowledged writes before the kill (default ``writes // 2``).
        rate: Writes per second for the writer (None: as fast as it can).
        config: Extra config over the policy's (e.g. ``{"save": "3 1"}``).
        timeout: Bound, in seconds, on the whole stream.

    Returns:
        A :class:`CrashResult`. Honest expectations: ``acked - lost <=
        recovered <= acked - lost + in_flight`` always. ``lost == 0`` under
        ``aof-always`` and ``aof-no``: the server writes the AOF buffer to the
        file (the kernel's page cache, which a process kill leaves intact)
        before it sends the replies. Under ``everysec`` (``aof-everysec``,
        ``rdb+aof``) usually 0 too, but not always: while the background
        fsync of the previous second is still running, the server holds the
        write back (up to 2 s) and still replies (``flushAppendOnlyFile`` in
        the server's ``aof.c``), so a kill at that moment loses the newest
        acknowledged writes (``lost_newest``). A busy disk makes it likelier;
        :func:`power_loss_test` with ``fsync_delay`` makes it certain.

    Raises:
        ValueError, TypeError: Unknown policy, or counts out of range.
    """
    full = policy_config(policy)
    kill_at = _check(writes, kill_at, rate, timeout)
    full.update(_extra(config))
    with Server(config=full) as server:
        writer, start, probe = _stream(server, writes, kill_at, rate, timeout)
        server.kill()
        stream_s = time.perf_counter() - start
        writer.stop.set()
        writer.join(timeout)
        probe.close()
        acked, in_flight = writer.acked, writer.in_flight
        t0 = time.perf_counter()
        server.restart()
        restart_s = time.perf_counter() - t0
        out = _outcome(server, writes, acked)
    return CrashResult(
        policy,
        writes,
        acked,
        in_flight,
        out.recovered,
        out.lost,
        out.extra,
        out.mismatched,
        stream_s,
        restart_s,
        out.lost_newest,
    )


def power_loss_test(
    shim: PowerCutShim,
    policy: str,
    writes: int = 2000,
    *,
    kill_at: int | None = None,
    rate: float | None = None,
    fsync_delay: float = 0.0,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> PowerLossResult:
    """Stream writes under ``policy``, then count what a kill and a power cut lose.

    As :func:`crash_test`, on a server running with ``shim`` preloaded; at
    the cut both endings are measured from the same files (see
    :class:`PowerLossResult`).

    Args:
        shim: A built :class:`PowerCutShim`.
        policy: One of ``labkit.lab.persistence.POLICIES``.
        writes, kill_at, rate, timeout: As in :func:`crash_test`.
        fsync_delay: Seconds each fsync waits first (0 to 60), set once the
            server is up: a slow disk. Under ``everysec`` the server then
            holds writes back (up to 2 s at a time) and still acknowledges
            them; ``aof_delayed_fsync`` counts each time it gave up waiting.
        config: Extra config over the policy's (e.g. ``{"save": "3 1"}``).

    Raises:
        ValueError, TypeError: Bad arguments (before any server starts).
        PowerCutUnavailableError: The shim cannot be built here.
    """
    if not isinstance(shim, PowerCutShim):
        raise TypeError(f"shim={shim!r}: must be a PowerCutShim")
    full = policy_config(policy)
    kill_at = _check(writes, kill_at, rate, timeout)
    check_seconds("fsync_delay", fsync_delay, max=60, min_open=False)
    full.update(_extra(config))
    server = shim.server(full).start()
    saved = Path(tempfile.mkdtemp(prefix="labkit-twin-"))
    try:
        if fsync_delay:
            set_fsync_delay(server, fsync_delay)
        mark = len(fsync_log(server))
        writer, start, probe = _stream(server, writes, kill_at, rate, timeout)
        info = _info_or_empty(probe)
        server.kill()
        stream_s = time.perf_counter() - start
        writer.stop.set()
        writer.join(timeout)
        probe.close()
        set_fsync_delay(server, 0)
        fsyncs = sum(1 for r in fsync_log(server)[mark:] if r.call != "unlink")
        acked, in_flight = writer.acked, writer.in_flight
        # The kill's ending runs on a copy, so that the power cut's ending
        # finds the files (and inodes) the shim's records refer to.
        _copy_data(server.data_dir, saved)
        with Server(config=full, data_dir=saved) as twin:
            kill = _outcome(twin, writes, acked)
        cut = power_cut(server)
        server.restart()
        power = _outcome(server, writes, acked)
    finally:
        set_fsync_delay(server, 0)
        server.close()
        shutil.rmtree(saved, ignore_errors=True)
    return PowerLossResult(
        policy,
        acked,
        in_flight,
        rate,
        fsync_delay,
        fsyncs,
        int(info.get("aof_delayed_fsync", 0)),
        int(info.get("aof_buffer_length", 0)),
        stream_s,
        kill,
        power,
        cut,
    )


def _extra(config: dict[str, str] | None) -> dict[str, str]:
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config={config!r}: must be a dict of directives or None")
    return dict(config or {})


def _info_or_empty(probe: redis.Redis) -> dict[str, Any]:
    try:
        return dict(probe.info("persistence"))
    except redis.exceptions.RedisError:  # blocked in an fsync (appendfsync always)
        return {}


def _copy_data(src: Path, dst: Path) -> None:
    """Copy the data files (RDB, AOF, manifest) from ``src`` to ``dst``."""
    found = [*src.glob("*"), *src.glob("appendonlydir/*")]
    keep = (".rdb", ".aof", ".manifest")
    for path in (p for p in found if p.is_file() and p.name.endswith(keep)):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _outcome(server: Server, writes: int, acked: int) -> Outcome:
    with server.client() as client:
        survivors = _read_back(client, writes)
    lost = sum(1 for i in range(acked) if i not in survivors)
    return Outcome(
        recovered=len(survivors),
        lost=lost,
        extra=sum(1 for i in survivors if i >= acked),
        mismatched=sum(1 for i, v in survivors.items() if v != _value(i)),
        lost_newest=all(i not in survivors for i in range(acked - lost, acked)),
    )


def _read_back(client: redis.Redis, writes: int, chunk: int = 1000) -> dict[int, Any]:
    """Index -> value of every stream key present (MGET in chunks)."""
    found: dict[int, Any] = {}
    for lo in range(0, writes, chunk):
        idx = range(lo, min(lo + chunk, writes))
        for i, v in zip(idx, client.mget([_KEY.format(i) for i in idx]), strict=True):
            if v is not None:
                found[i] = v
    return found
