"""What durability costs: write throughput, restart time, AOF files and rewrites."""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import redis

from labkit.core.args import check_int, check_seconds
from labkit.core.clients import supports
from labkit.lab.errors import ExperimentTimeoutError
from labkit.lab.measure import compare_rates
from labkit.lab.persistence._policies import POLICIES, policy_config
from labkit.server import Server

__all__ = [
    "AofFile",
    "RestartResult",
    "aof_files",
    "load_keys",
    "restart_time",
    "rewrite_aof",
    "save_now",
    "servers_for",
    "write_throughput",
    "written",
]


@contextlib.contextmanager
def servers_for(policies: Iterable[str]) -> Iterator[dict[str, Server]]:
    """One fresh server per policy, all closed on exit."""
    configs = {p: policy_config(p) for p in policies}
    servers: dict[str, Server] = {}
    try:
        for policy, config in configs.items():
            servers[policy] = Server(config=config).start()
        yield servers
    finally:
        for server in servers.values():
            server.close()


def write_throughput(
    policies: Iterable[str] | None = None,
    *,
    seconds: float = 1.0,
    rounds: int = 10,
    value_bytes: int = 100,
) -> dict[str, float]:
    """SETs per second under each policy, measured interleaved in one run.

    One server per policy; each round gives every policy ``seconds / rounds``
    of one-at-a-time ``SET`` calls on fresh keys (a single client, so with
    ``aof-always`` every write waits for its own fsync). The median per
    policy is returned; divide by ``"none"`` for the cost of durability.
    """
    check_int("value_bytes", value_bytes, min=1, max=1_000_000)
    check_seconds("seconds", seconds, max=3600)
    check_int("rounds", rounds, min=1, max=1000)
    if isinstance(policies, str):
        raise TypeError(f"policies={policies!r}: must be a list of policies (or None)")
    names = list(POLICIES if policies is None else policies)
    for name in names:
        policy_config(name)
    value = "x" * value_bytes
    with servers_for(names) as servers:
        ops = {}
        for policy, server in servers.items():
            client, counter = server.client(), itertools.count()

            def one_set(
                c: redis.Redis = client, n: itertools.count[int] = counter
            ) -> None:
                c.set(f"tp:{next(n)}", value)

            ops[policy] = one_set
        return compare_rates(ops, seconds=seconds, rounds=rounds)


def load_keys(client: redis.Redis, keys: int, *, value_bytes: int = 100) -> None:
    """Write ``keys`` keys ``k:<i>`` of ``value_bytes`` bytes, 1000 per MSET."""
    check_int("keys", keys, min=0, max=10_000_000)
    check_int("value_bytes", value_bytes, min=1, max=1_000_000)
    value = "x" * value_bytes
    for lo in range(0, keys, 1000):
        client.mset({f"k:{i}": value for i in range(lo, min(lo + 1000, keys))})


class RestartResult(NamedTuple):
    """One restart.

    Attributes:
        policy: Durability policy.
        keys: Keys written before the crash.
        restored: Keys present after the restart.
        seconds: Restart duration: process start to first PING answered
            (the server answers LOADING until the data is in); the fastest
            of the repeats.
        load_s: The loading part alone, as the server logs it ("DB loaded
            from ...: X seconds"); 0.0 when there was nothing to load.
        disk_bytes: Size of the RDB/AOF files it loaded.
        label: The policy, with " (rewritten)" when the AOF was compacted.
    """

    policy: str
    keys: int
    restored: int
    seconds: float
    load_s: float
    disk_bytes: int
    label: str = ""


def restart_time(
    policy: str,
    keys: int,
    *,
    value_bytes: int = 100,
    rewrite: bool = False,
    repeats: int = 3,
) -> RestartResult:
    """Crash and restart a server holding ``keys`` keys; time the reload.

    For ``"rdb"`` a ``SAVE`` is taken first (so there is something to load);
    AOF policies replay their log, or, with ``rewrite=True``, the compact
    file ``BGREWRITEAOF`` leaves (an RDB-format base). The same files are
    reloaded ``repeats`` times and the fastest is kept: on a shared machine
    the minimum is the least disturbed measurement.
    """
    config = policy_config(policy)
    check_int("keys", keys, min=0, max=10_000_000)
    check_int("repeats", repeats, min=1, max=20)
    check_int("value_bytes", value_bytes, min=1, max=1_000_000)
    with Server(config=config) as server:
        client = server.client()
        load_keys(client, keys, value_bytes=value_bytes)
        if "rdb" in policy:
            save_now(client)
        if rewrite and config["appendonly"] == "yes":
            rewrite_aof(client, server.data_dir)
        if config["appendonly"] == "yes":
            # In the file before the kill: everysec may hold the newest
            # writes back for a moment (see crash_test), and this measures
            # loading.
            written(client)
        server.kill()
        disk = sum(f.bytes for f in aof_files(server.data_dir)) + _size(
            server.data_dir / "dump.rdb"
        )
        times, loads = [], []
        for attempt in range(repeats):
            if attempt:
                server.kill()
            offset = _size(server.log_path)
            t0 = time.perf_counter()
            server.restart()
            times.append(time.perf_counter() - t0)
            with open(server.log_path, "rb") as log:
                log.seek(offset)
                found = _LOADED.findall(log.read().decode(errors="replace"))
            loads.append(float(found[-1]) if found else 0.0)
        restored = int(server.client().dbsize())
    label = f"{policy} (rewritten)" if rewrite else policy
    return RestartResult(policy, keys, restored, min(times), min(loads), disk, label)


def save_now(client: redis.Redis, timeout: float = 60.0) -> None:
    """``SAVE``, after any background save (a save rule firing) has finished."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.save()
            return
        except redis.exceptions.ResponseError as exc:
            if "in progress" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise ExperimentTimeoutError(
                f"a background save still ran after {timeout:g} s",
                server=str(client.connection_pool.connection_kwargs.get("port")),
                waited="rdb_bgsave_in_progress == 0",
            )
        time.sleep(0.01)


def written(client: redis.Redis, timeout: float = 10.0) -> None:
    """Return once this connection's writes are in the AOF file.

    ``WAITAOF 1 0 0`` where the server has it (Redis/Valkey >= 7.2): it
    waits for this connection's writes to be fsynced. On Redis 7.0, waits
    until the AOF buffer is empty (``aof_buffer_length``): written to the
    file, which is what a process kill cannot take away.
    """
    if supports(client, "waitaof"):
        client.execute_command("WAITAOF", 1, 0, round(timeout * 1000))
        return
    deadline = time.monotonic() + timeout
    while int(client.info("persistence").get("aof_buffer_length", 0)):
        if time.monotonic() > deadline:
            raise ExperimentTimeoutError(
                f"the AOF buffer was not written within {timeout:g} s",
                server=str(client.connection_pool.connection_kwargs.get("port")),
                waited="aof_buffer_length == 0",
            )
        time.sleep(0.01)


_LOADED = re.compile(r"DB loaded from (?:disk|append only file): ([0-9.]+) seconds")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class AofFile(NamedTuple):
    """One file of a multi-part AOF.

    Attributes:
        name: File name inside ``appendonlydir``.
        kind: ``"base"`` (a snapshot, RDB format by default), ``"incr"``
            (commands since the base), ``"history"`` (awaiting deletion) or
            ``"manifest"`` (lists the others, in order).
        bytes: Size on disk.
    """

    name: str
    kind: str
    bytes: int


_KINDS = {"b": "base", "i": "incr", "h": "history"}


def aof_files(data_dir: str | Path, dirname: str = "appendonlydir") -> list[AofFile]:
    """The AOF files in ``data_dir``, as the manifest lists them, plus the manifest."""
    folder = Path(data_dir) / dirname
    manifests = sorted(folder.glob("*.manifest")) if folder.is_dir() else []
    out: list[AofFile] = []
    for manifest in manifests:
        for line in manifest.read_text().splitlines():
            fields = line.split()
            spec = dict(zip(fields[::2], fields[1::2], strict=False))
            if "file" in spec:
                kind = _KINDS.get(spec.get("type", ""), spec.get("type", "?"))
                out.append(AofFile(spec["file"], kind, _size(folder / spec["file"])))
        out.append(AofFile(manifest.name, "manifest", _size(manifest)))
    return out


def rewrite_aof(
    client: redis.Redis, data_dir: str | Path, *, timeout: float = 30.0
) -> tuple[list[AofFile], list[AofFile]]:
    """Run ``BGREWRITEAOF`` and wait for it; return the AOF files before and after.

    The rewrite forks, writes the dataset as a new base file, starts a new
    (empty) incremental file, and swaps the manifest atomically; the old
    files are deleted once no longer needed.
    """
    check_seconds("timeout", timeout, max=3600)
    before = aof_files(data_dir)
    done = int(client.info("persistence").get("aof_rewrites", 0))
    client.bgrewriteaof()
    deadline = time.monotonic() + timeout
    while True:
        info = client.info("persistence")
        if (
            int(info.get("aof_rewrites", done + 1)) > done
            and not info["aof_rewrite_in_progress"]
            and not info["aof_rewrite_scheduled"]
        ):
            break
        if time.monotonic() > deadline:
            raise ExperimentTimeoutError(
                f"BGREWRITEAOF did not finish within {timeout:g} s",
                server=str(data_dir),
                waited="BGREWRITEAOF to finish",
            )
        time.sleep(0.01)
    return before, aof_files(data_dir)
