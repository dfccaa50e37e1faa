"""File formats measured: AOF vs RDB size and load time, and what a fork costs."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass

import redis

from labkit.core.args import check_choice, check_int
from labkit.lab.errors import ExperimentTimeoutError
from labkit.server import Server

__all__ = ["ForkCost", "FormatResult", "fork_cost", "formats_test", "load_random"]

_LOADED = re.compile(r"DB loaded from (?:disk|append only file): ([0-9.]+) seconds")


def load_random(
    client: redis.Redis,
    keys: int,
    *,
    overwrites: int = 1,
    value_bytes: int = 100,
    values: str = "random",
    seed: int = 0,
) -> int:
    """SET each key ``k:<i>`` ``overwrites`` times, one command per write.

    Args:
        client: Where to write (a ``decode_responses=False`` client is best
            for random bytes; any works).
        keys: How many keys.
        overwrites: How many times each key is written (the last value stays).
        value_bytes: Size of each value.
        values: ``"random"`` (seeded random bytes, which no compressor can
            shrink) or ``"repeated"`` (one byte repeated, which LZF shrinks
            to almost nothing).
        seed: Seed of the random values.

    Commands go out pipelined 1,000 at a time but stay separate commands, so
    an AOF logs every one of them. Returns the number of writes.
    """
    check_int("keys", keys, min=0, max=10_000_000)
    check_int("overwrites", overwrites, min=1, max=1000)
    check_int("value_bytes", value_bytes, min=1, max=1_000_000)
    check_choice("values", values, ["random", "repeated"])
    rnd = random.Random(seed)
    pipe = client.pipeline(transaction=False)
    sent = 0
    for _ in range(overwrites):
        for i in range(keys):
            value = (
                rnd.randbytes(value_bytes) if values == "random" else b"x" * value_bytes
            )
            pipe.set(f"k:{i}", value)
            sent += 1
            if sent % 1000 == 0:
                pipe.execute()
    pipe.execute()
    return sent


@dataclass(frozen=True)
class FormatResult:
    """The same dataset as an RDB snapshot and as an AOF, on disk and at load.

    Attributes:
        keys: Keys in the dataset.
        overwrites: Times each key was written (the AOF logs every write).
        values: ``"random"`` or ``"repeated"``.
        rdbcompression: Whether RDB compressed strings (LZF).
        rdb_bytes: Size of ``dump.rdb`` after ``SAVE``.
        aof_bytes: Size of the AOF (base + incremental file) before a rewrite.
        rdb_load_s: Loading time of the RDB at restart (server log), the
            fastest of the repeats.
        aof_load_s: Loading (replay) time of the AOF, the fastest of the repeats.
    """

    keys: int
    overwrites: int
    values: str
    rdbcompression: bool
    rdb_bytes: int
    aof_bytes: int
    rdb_load_s: float
    aof_load_s: float

    @property
    def ratio(self) -> float:
        """AOF size / RDB size."""
        return self.aof_bytes / self.rdb_bytes if self.rdb_bytes else float("inf")


def formats_test(
    keys: int = 20_000,
    *,
    overwrites: int = 1,
    value_bytes: int = 100,
    values: str = "random",
    rdbcompression: bool = True,
    repeats: int = 3,
) -> FormatResult:
    """Write a dataset with an AOF on, ``SAVE`` it too, compare the two files.

    One server with ``appendonly yes`` (``appendfsync no``: this measures
    sizes and loading, not durability) and no automatic rewrite writes the
    dataset (:func:`load_random`), then ``SAVE``\\s ``dump.rdb``. It is
    killed and restarted ``repeats`` times loading the AOF, then ``repeats``
    times with ``appendonly no``, loading the RDB; each loading time is the
    server's own log line, and the fastest is kept.
    """
    check_int("repeats", repeats, min=1, max=20)
    if not isinstance(rdbcompression, bool):
        raise TypeError(f"rdbcompression={rdbcompression!r}: must be True or False")
    config = {
        "appendonly": "yes",
        "appendfsync": "no",
        "auto-aof-rewrite-percentage": "0",
        "rdbcompression": "yes" if rdbcompression else "no",
    }
    with Server(config=config) as server:
        client = server.client(decode_responses=False)
        load_random(
            client, keys, overwrites=overwrites, value_bytes=value_bytes, values=values
        )
        client.save()
        client.close()
        server.kill()
        folder = server.data_dir
        rdb = (folder / "dump.rdb").stat().st_size
        aof = sum(p.stat().st_size for p in (folder / "appendonlydir").glob("*.aof"))
        aof += sum(p.stat().st_size for p in (folder / "appendonlydir").glob("*.rdb"))
        aof_s = _load_times(server, repeats)
        server.config["appendonly"] = "no"  # the next start loads dump.rdb
        rdb_s = _load_times(server, repeats)
    return FormatResult(
        keys, overwrites, values, rdbcompression, rdb, aof, min(rdb_s), min(aof_s)
    )


def _load_times(server: Server, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        offset = server.log_path.stat().st_size if server.log_path.exists() else 0
        server.restart()
        server.kill()
        with open(server.log_path, "rb") as log:
            log.seek(offset)
            found = _LOADED.findall(log.read().decode(errors="replace"))
        times.append(float(found[-1]) if found else 0.0)
    return times


@dataclass(frozen=True)
class ForkCost:
    """What one background save cost the server.

    Attributes:
        keys: Keys in the dataset.
        used_memory: ``used_memory`` before the save, in bytes.
        command: ``"BGSAVE"`` or ``"BGREWRITEAOF"``.
        writes_during: Writes another client made while the child ran.
        fork_usec: ``latest_fork_usec``: how long ``fork()`` blocked the
            server (it copies the page tables, which grow with memory); the
            shortest of ``fork_repeats`` forks, so that a fork delayed by
            another process on a busy machine does not stand for the cost.
        cow_bytes: Copy-on-write memory the child reported at the end
            (``rdb_last_cow_size`` / ``aof_last_cow_size``): pages the
            parent changed while the child still needed the old ones.
        child_s: Seconds the child ran.
    """

    keys: int
    used_memory: int
    command: str
    writes_during: int
    fork_usec: int
    cow_bytes: int
    child_s: float


class _Overwriter(threading.Thread):
    """Overwrites random existing keys, 50 per round trip, until stopped."""

    def __init__(self, server: Server, keys: int, value_bytes: int) -> None:
        super().__init__(name="labkit-overwriter", daemon=True)
        self.client = server.client(decode_responses=False, socket_timeout=10)
        self.keys, self.value = keys, b"y" * value_bytes
        self.stop = threading.Event()
        self.writes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rnd = random.Random(1)
        try:
            while not self.stop.is_set():
                pipe = self.client.pipeline(transaction=False)
                for _ in range(50):
                    pipe.set(f"key:{rnd.randrange(self.keys)}", self.value)
                pipe.execute()
                self.writes += 50
        except redis.exceptions.RedisError as exc:  # reported by fork_cost
            self.error = exc
        finally:
            self.client.close()


def fork_cost(
    keys: int,
    *,
    command: str = "BGSAVE",
    concurrent_writes: bool = True,
    value_bytes: int = 100,
    fork_repeats: int = 3,
    timeout: float = 120.0,
) -> ForkCost:
    """Fill a server with ``keys`` keys, run ``command``, measure its fork.

    The keys (``key:0`` ...) are made by ``DEBUG POPULATE`` (enabled for
    local connections on this server only), which fills millions in a blink.
    With ``concurrent_writes`` a second client overwrites random keys for as
    long as the child runs, as production traffic would: each page it
    touches is copied (copy-on-write) while the child still needs the old
    one. Without it, the copy-on-write size shows the floor (the child's own
    pages). After that child, ``command`` runs ``fork_repeats - 1`` more
    times with no writer, and ``fork_usec`` is the shortest fork seen: the
    fork's own cost, without the scheduling delays a busy machine adds.

    Raises:
        ExperimentTimeoutError: The child did not finish within ``timeout`` seconds.
    """
    check_int("keys", keys, min=1, max=5_000_000)
    check_choice("command", command, ["BGSAVE", "BGREWRITEAOF"])
    check_int("fork_repeats", fork_repeats, min=1, max=20)
    if not isinstance(concurrent_writes, bool):
        raise TypeError(
            f"concurrent_writes={concurrent_writes!r}: must be True or False"
        )
    aof = command == "BGREWRITEAOF"
    config = {"enable-debug-command": "local"}
    if aof:
        config.update({"appendonly": "yes", "appendfsync": "no"})
    with Server(config=config) as server, server.client() as admin:
        admin.execute_command("DEBUG", "POPULATE", keys, "key", value_bytes)
        memory = int(admin.info("memory")["used_memory"])
        writer = _Overwriter(server, keys, value_bytes)
        if concurrent_writes:
            writer.start()
            time.sleep(0.05)
        before = writer.writes
        started = time.monotonic()
        _run_child(server, admin, command, timeout)
        child_s = time.monotonic() - started
        during = writer.writes - before
        writer.stop.set()
        if concurrent_writes:
            writer.join(10)
        if writer.error is not None:
            raise writer.error
        persistence = admin.info("persistence")
        fork_usec = int(admin.info("stats")["latest_fork_usec"])
        for _ in range(fork_repeats - 1):
            _run_child(server, admin, command, timeout)
            fork_usec = min(fork_usec, int(admin.info("stats")["latest_fork_usec"]))
    cow = persistence["aof_last_cow_size" if aof else "rdb_last_cow_size"]
    return ForkCost(keys, memory, command, during, fork_usec, int(cow), child_s)


def _run_child(
    server: Server, admin: redis.Redis, command: str, timeout: float
) -> None:
    """Run BGSAVE or BGREWRITEAOF and wait (bounded) until its child is done."""
    aof = command == "BGREWRITEAOF"
    flag = "aof_rewrite_in_progress" if aof else "rdb_bgsave_in_progress"
    started = time.monotonic()
    admin.execute_command(command)
    while int(admin.info("persistence")[flag]) or (
        aof and int(admin.info("persistence")["aof_rewrite_scheduled"])
    ):
        if time.monotonic() - started > timeout:
            raise ExperimentTimeoutError(
                f"{command} did not finish within {timeout:g} s",
                server=f"{server.host}:{server.port}",
                waited=f"{command} to finish",
            )
        time.sleep(0.005)
