"""Durability configurations, and what an OS crash could cost each one (modelled)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from labkit.core.args import YEAR, check_number, check_seconds

__all__ = ["POLICIES", "OsCrashExposure", "os_crash_exposure", "policy_config"]

#: Server config per durability policy. The "rdb" save rule snapshots after
#: 1 second if at least 1 key changed: the shortest rule the server accepts,
#: so that a crash test sees a snapshot partway through its stream.
#: ``hz 100`` runs the server's timer (which checks save rules) every 10 ms.
POLICIES: dict[str, dict[str, str]] = {
    "none": {"save": "", "appendonly": "no"},
    "rdb": {"save": "1 1", "appendonly": "no", "hz": "100"},
    "aof-always": {"save": "", "appendonly": "yes", "appendfsync": "always"},
    "aof-everysec": {"save": "", "appendonly": "yes", "appendfsync": "everysec"},
    "aof-no": {"save": "", "appendonly": "yes", "appendfsync": "no"},
    "rdb+aof": {
        "save": "1 1",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "hz": "100",
    },
}


def policy_config(policy: str) -> dict[str, str]:
    """The server config for ``policy`` (a copy: safe to extend).

    Raises:
        ValueError: ``policy`` is not one of :data:`POLICIES`.
    """
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(
            f"policy={policy!r}: must be one of {', '.join(map(repr, POLICIES))}"
        )
    return dict(POLICIES[policy])


def _read_sysctl(name: str, default: int) -> int:
    try:
        return int(Path("/proc/sys/vm", name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


class OsCrashExposure(NamedTuple):
    """Acknowledged writes an OS crash or power loss could destroy (MODELLED).

    A process kill (SIGKILL) cannot show this: the server has normally handed
    every acknowledged write to the kernel, which keeps the page cache across
    a process death (the exception: ``everysec`` holding a write back while a
    slow background fsync runs; see :func:`crash_test`). Only losing the
    kernel itself (OS crash, power cut) drops what was not yet fsynced.
    These numbers come from the documented behaviour of each policy, not
    from a measurement; :func:`power_loss_test` measures them where the
    power-cut shim can be built.

    Attributes:
        policy: The durability policy.
        window_s: Seconds of acknowledged writes at risk (modelled).
        writes_at_risk: ``window_s * write_rate``, rounded; -1 means all.
        basis: Where the window comes from, in words.
    """

    policy: str
    window_s: float
    writes_at_risk: int
    basis: str


def os_crash_exposure(
    policy: str,
    write_rate: float,
    *,
    save_seconds: float = 1.0,
    bgsave_seconds: float = 0.0,
    stall_seconds: float = 0.0,
) -> OsCrashExposure:
    """Model the OS-crash loss window of ``policy`` at ``write_rate`` writes/s.

    Args:
        policy: One of :data:`POLICIES`.
        write_rate: Acknowledged writes per second (e.g. one you measured).
        save_seconds: For RDB, the interval of the save rule (``save N 1``).
        bgsave_seconds: For RDB, how long a BGSAVE takes (a snapshot covers
            the data as of its fork, and is safe only once written).
        stall_seconds: For ``everysec``, how long an fsync is stuck (a busy or
            stalled disk; or a rewrite under ``no-appendfsync-on-rewrite
            yes``, which skips fsyncs while it runs).

    The windows: ``always`` fsyncs the AOF before replying, so nothing
    acknowledged is at risk; ``everysec`` fsyncs once a second in the
    background, so about the last second is unsynced, plus however long an
    fsync stays stuck (the server postpones writing for at most 2 s while
    one is in flight, then writes without it: the unsynced tail lasts as
    long as the stall); ``no`` leaves flushing to the kernel, whose
    writeback (``vm.dirty_expire_centisecs`` plus one
    ``dirty_writeback_centisecs`` period, read from this machine) bounds
    the window; RDB loses everything since the last snapshot's fork: the
    rule fires once *more than* N whole seconds (the server's clock in
    seconds) have passed, so up to N + 1 s, plus the BGSAVE time.
    """
    policy_config(policy)
    check_number("write_rate", write_rate, min=0, max=10_000_000, unit="of writes/s")
    for name, value in (
        ("save_seconds", save_seconds),
        ("bgsave_seconds", bgsave_seconds),
        ("stall_seconds", stall_seconds),
    ):
        check_seconds(name, value, max=YEAR, min_open=name == "save_seconds")
    if policy == "none":
        window, basis = float("inf"), "nothing is written to disk: all data lost"
    elif policy == "rdb":
        window = save_seconds + 1 + bgsave_seconds
        basis = (
            f"writes since the last snapshot's fork: rule 'save {save_seconds:g}' "
            f"(+1 s: whole seconds) + BGSAVE {bgsave_seconds:g} s"
        )
    elif policy == "aof-always":
        window, basis = 0.0, "AOF fsynced before each reply"
    elif policy in ("aof-everysec", "rdb+aof"):
        window = 1.0 + stall_seconds
        basis = "AOF fsynced every second in the background" + (
            f", plus a {stall_seconds:g} s fsync stall" if stall_seconds else ""
        )
    else:  # aof-no
        expire = _read_sysctl("dirty_expire_centisecs", 3000) / 100
        writeback = _read_sysctl("dirty_writeback_centisecs", 500) / 100
        window = expire + writeback
        basis = (
            f"kernel writeback: dirty pages older than {expire:g} s, "
            f"flushed every {writeback:g} s"
        )
    # -1 stands for "all of it": with no persistence the window is unbounded.
    at_risk = -1 if math.isinf(window) else round(window * write_rate)
    return OsCrashExposure(policy, window, at_risk, basis)
