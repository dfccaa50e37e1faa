"""What durability costs and what a crash loses, per policy, measured in one run.

Three tables: SETs per second per policy as a ratio to no persistence (one
client, policies interleaved in rounds); loading time at restart vs dataset
size for RDB, AOF and a rewritten AOF; and lost acknowledged writes over
several SIGKILL crash tests per policy.
Usage: python benchmarks/bench_persistence.py [seconds] [crash_runs]
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from labkit.lab.persistence import POLICIES, crash_test, restart_time, write_throughput

SIZES = [0, 50_000, 100_000, 200_000]


def main(seconds: float = 3.0, crash_runs: int = 3) -> dict[str, object]:
    rates = write_throughput(seconds=seconds, rounds=10)
    base = rates["none"]
    print(f"{'policy':<14}{'SETs/s':>10}{'vs none':>9}")
    for policy, value in rates.items():
        print(f"{policy:<14}{value:>10,.0f}{value / base:>8.2f}x")

    variants = [("rdb", False), ("aof-everysec", False), ("aof-everysec", True)]
    restarts = [
        restart_time(p, n, rewrite=rw)
        for p, rw in variants
        for n in tqdm(SIZES, desc=f"restart {p}{' rewritten' if rw else ''}")
    ]
    print(f"\n{'variant':<26}{'keys':>8}{'load ms':>9}{'restart ms':>12}{'disk KB':>9}")
    for res in restarts:
        print(
            f"{res.label:<26}{res.keys:>8}{res.load_s * 1000:>9.1f}"
            f"{res.seconds * 1000:>12.1f}{res.disk_bytes / 1024:>9.0f}"
        )

    crashes = {
        p: [crash_test(p, writes=2000) for _ in range(crash_runs)]
        for p in tqdm(POLICIES, desc="crash tests")
    }
    print(f"\n{'policy':<14}{'runs':>5}{'acked':>8}{'lost':>7}{'extra':>7}")
    for policy, runs in crashes.items():
        acked, lost = sum(r.acked for r in runs), sum(r.lost for r in runs)
        extra = sum(r.extra for r in runs)
        print(f"{policy:<14}{len(runs):>5}{acked:>8}{lost:>7}{extra:>7}")
    return {"rates": rates, "restarts": restarts, "crashes": crashes}


if __name__ == "__main__":
    main(
        float(sys.argv[1]) if len(sys.argv) > 1 else 3.0,
        int(sys.argv[2]) if len(sys.argv) > 2 else 3,
    )
