"""Power-loss tests: the same stream of writes, ended by a kill and by a power cut."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from labkit.core.args import check_seconds
from labkit.lab.persistence._crash import (
    Outcome,
    _aof_bytes,
    _check,
    _extra,
    _outcome,
    _stream,
)
from labkit.lab.persistence._policies import policy_config
from labkit.lab.persistence._powercut import (
    CutFile,
    PowerCutShim,
    fsync_log,
    power_cut,
    set_fsync_delay,
)
from labkit.server import Server

__all__ = ["PowerLossResult", "power_loss_test"]


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
        acked_at_info: Writes acknowledged when that INFO was sent (0 if it
            got no answer): apart from the ``held_back`` ones, each had been
            written to the file (the page cache) by then.
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
    acked_at_info: int
    stream_s: float
    kill: Outcome
    power: Outcome
    cut: list[CutFile] = field(default_factory=list, repr=False)

    @property
    def kill_may_lose(self) -> int:
        """The most acknowledged writes a SIGKILL may lose, by the server's report.

        A kill loses what had not been written to the file: the newest
        writes held back in memory at the INFO (as many as fit in
        ``held_back`` bytes) and those acknowledged after it. Under an AOF
        policy that is 0, unless everysec held writes back while a slow
        background fsync ran (``crash_test`` explains when).
        """
        fit, room = 0, self.held_back
        for i in range(self.acked_at_info - 1, -1, -1):
            room -= _aof_bytes(i)
            if room < 0:
                break
            fit += 1
        return fit + self.acked - self.acked_at_info

    @property
    def power_lost_s(self) -> float | None:
        """The power cut's loss in seconds of writes (``power.lost / rate``)."""
        return self.power.lost / self.rate if self.rate else None


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
        acked_at_info = writer.acked  # all answered before INFO is sent
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
        acked_at_info if info else 0,
        stream_s,
        kill,
        power,
        cut,
    )


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
