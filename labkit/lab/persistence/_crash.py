"""Crash tests: stream acknowledged writes, SIGKILL the server, count survivors."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from labkit.core.args import check_int, check_number, check_seconds
from labkit.lab.persistence._policies import policy_config
from labkit.server import Server, no_retry

__all__ = ["CrashResult", "Outcome", "crash_test"]

_KEY = "crash:{:06d}"


def _value(i: int) -> str:
    return f"v{i}"


def _aof_bytes(i: int) -> int:
    """Bytes write ``i`` (``SET crash:<i> v<i>``) takes in the AOF (RESP)."""
    key, value = _KEY.format(i), _value(i)
    return len(
        f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(value)}\r\n{value}\r\n"
    )


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


def _extra(config: dict[str, str] | None) -> dict[str, str]:
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config={config!r}: must be a dict of directives or None")
    return dict(config or {})


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
