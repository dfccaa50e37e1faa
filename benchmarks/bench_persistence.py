"""What durability costs and what a crash or a power cut loses, measured in one run.

Five tables, every number measured here, in this run:

1. SETs per second per policy, one client, as a ratio to no persistence
   (policies interleaved in rounds), and aof-always with 8 clients (group
   commit: one fsync shared by the writes of one event-loop pass).
2. Acknowledged writes lost per policy over several runs, to a SIGKILL and to
   a power cut (the LD_PRELOAD shim; skipped with the reason where it cannot
   be built), in writes and in seconds of writes at the stream's rate.
3. AOF vs RDB: file sizes and loading time for random values, per overwrite
   factor k (each key written k times).
4. The fork behind BGSAVE: fork time and copy-on-write under concurrent
   writes, against dataset size.
5. Loading time at restart vs dataset size for RDB, AOF and a rewritten AOF.

Usage: python benchmarks/bench_persistence.py [seconds] [runs]
"""

from __future__ import annotations

import sys
import threading
import time

from tqdm import tqdm

from labkit.lab.errors import PowerCutUnavailableError
from labkit.lab.persistence import (
    POLICIES,
    PowerCutShim,
    PowerLossResult,
    fork_cost,
    formats_test,
    policy_config,
    power_loss_test,
    restart_time,
    write_throughput,
)
from labkit.server import Server

RATE = 500  # writes per second in the loss runs
SIZES = [0, 50_000, 100_000, 200_000]
FORMAT_KEYS = 50_000
FORK_KEYS = [100_000, 400_000, 1_600_000]


def always_with_clients(clients: int, per_client: int = 500) -> float:
    """aof-always SETs per second with ``clients`` threads on one server."""
    with Server(config=policy_config("aof-always")) as srv:

        def work(n: int) -> None:
            with srv.client() as c:
                for i in range(per_client):
                    c.set(f"{n}:{i}", i)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return clients * per_client / (time.perf_counter() - start)


def throughput(seconds: float) -> dict[str, float]:
    rates = write_throughput(seconds=seconds, rounds=10)
    base = rates["none"]
    print(f"{'policy':<14}{'SETs/s':>10}{'vs none':>9}")
    for policy, value in rates.items():
        print(f"{policy:<14}{value:>10,.0f}{value / base:>8.2f}x")
    one, eight = always_with_clients(1), always_with_clients(8)
    ratio = eight / one
    print(f"aof-always: 1 client {one:,.0f}/s, 8 clients {eight:,.0f}/s, {ratio:.2f}x")
    return rates


def losses(runs: int) -> dict[str, list[PowerLossResult]]:
    try:
        shim = PowerCutShim().build()
    except PowerCutUnavailableError as exc:
        print(f"\npower-cut runs skipped: {exc.reason}")
        return {}
    out: dict[str, list[PowerLossResult]] = {}
    cases = [(p, 0.0) for p in ("aof-always", "aof-everysec", "aof-no", "rdb")]
    cases.append(("aof-everysec", 30.0))  # a stalled disk
    try:
        for policy, delay in tqdm(cases, desc="power cuts"):
            label = f"{policy} (fsync stalled)" if delay else policy
            out[label] = [
                power_loss_test(
                    shim,
                    policy,
                    writes=20 * RATE,
                    kill_at=3 * RATE,
                    rate=RATE,
                    fsync_delay=delay,
                )
                for _ in range(runs)
            ]
    finally:
        shim.close()
    print(f"\n{'policy':<28}{'runs':>5}{'acked':>7}{'SIGKILL lost':>14}"
          f"{'power lost':>12}{'max s lost':>12}{'fsyncs/ack':>12}")  # fmt: skip
    for label, results in out.items():
        acked = sum(r.acked for r in results)
        kill = sum(r.kill.lost for r in results)
        power = sum(r.power.lost for r in results)
        worst = max(r.power.lost for r in results) / RATE
        fsyncs = sum(r.fsyncs for r in results) / max(acked, 1)
        print(f"{label:<28}{len(results):>5}{acked:>7}{kill:>14}{power:>12}"
              f"{worst:>12.2f}{fsyncs:>12.3f}")  # fmt: skip
    return out


def formats() -> None:
    print(f"\n{'k':>3}{'RDB MB':>9}{'AOF MB':>9}{'AOF/RDB':>9}{'RDB load ms':>13}"
          f"{'AOF load ms':>13}")  # fmt: skip
    for k in tqdm([1, 4, 8], desc="formats"):
        f = formats_test(FORMAT_KEYS, overwrites=k)
        print(f"{k:>3}{f.rdb_bytes / 1e6:>9.2f}{f.aof_bytes / 1e6:>9.2f}{f.ratio:>9.2f}"
              f"{f.rdb_load_s * 1000:>13.0f}{f.aof_load_s * 1000:>13.0f}")  # fmt: skip


def forks() -> None:
    print(f"\n{'keys':>10}{'memory MB':>11}{'writes':>8}{'fork ms':>9}{'COW MB':>8}"
          f"{'child s':>9}")  # fmt: skip
    for n in tqdm(FORK_KEYS, desc="forks"):
        for busy in (True, False):
            c = fork_cost(n, concurrent_writes=busy)
            mb, cow = c.used_memory / 1e6, c.cow_bytes / 1e6
            fork_ms = c.fork_usec / 1000
            print(f"{n:>10}{mb:>11.1f}{c.writes_during:>8}"
                  f"{fork_ms:>9.2f}{cow:>8.1f}{c.child_s:>9.2f}")  # fmt: skip


def restarts() -> None:
    variants = [("rdb", False), ("aof-everysec", False), ("aof-everysec", True)]
    results = [
        restart_time(p, n, rewrite=rw)
        for p, rw in variants
        for n in tqdm(SIZES, desc=f"restart {p}{' rewritten' if rw else ''}")
    ]
    print(f"\n{'variant':<26}{'keys':>8}{'load ms':>9}{'restart ms':>12}{'disk KB':>9}")
    for res in results:
        print(
            f"{res.label:<26}{res.keys:>8}{res.load_s * 1000:>9.1f}"
            f"{res.seconds * 1000:>12.1f}{res.disk_bytes / 1024:>9.0f}"
        )


def main(seconds: float = 3.0, runs: int = 3) -> None:
    started = time.perf_counter()
    throughput(seconds)
    losses(runs)
    formats()
    forks()
    restarts()
    print(
        f"\n{len(POLICIES)} policies; whole run {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__" and "--instructions" in sys.argv:
    # Instructions per operation (callgrind), the load-proof counterpart of the
    # rates below, and the targets: bench_instructions.py, topic "persistence".
    from bench_instructions import main as count_instructions

    sys.exit(count_instructions(["--only", "persistence"]))

if __name__ == "__main__":
    main(
        float(sys.argv[1]) if len(sys.argv) > 1 else 3.0,
        int(sys.argv[2]) if len(sys.argv) > 2 else 3,
    )
