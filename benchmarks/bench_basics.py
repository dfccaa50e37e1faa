"""Baseline rates on this machine: GET, pipelined GET, MGET, EVALSHA, INCR.

Every row is measured in this run against the same server, and reported as a
ratio to a plain GET measured in the same run: the later benchmarks compare
patterns with these floors. Usage: python benchmarks/bench_basics.py [seconds]
"""

from __future__ import annotations

import sys
from typing import Any

import labkit
from labkit.core.scripts import Script
from labkit.lab.measure import compare_rates

# SET then GET of one key: the smallest script
SET_GET = Script("basics_set_get", package="labkit.lab")


def main(seconds: float = 2.0) -> dict[str, float]:
    r = labkit.connect()
    r.set("bench:k", "v")
    keys = [f"bench:k{i}" for i in range(100)]
    r.mset(dict.fromkeys(keys, "v"))

    def pipelined_100() -> None:
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.get(k)
        pipe.execute()

    rows: dict[str, Any] = {
        "GET": lambda: r.get("bench:k"),
        "INCR": lambda: r.incr("bench:n"),
        "EVALSHA (SET+GET script)": lambda: SET_GET(r, ["bench:s"], ["v"]),
        "MGET of 100 (per key)": (lambda: r.mget(keys), 100),
        "pipeline of 100 GETs (per GET)": (pipelined_100, 100),
    }
    rates = compare_rates(rows, seconds=seconds)
    base = rates["GET"]
    print(f"{'operation':<34}{'ops/s':>12}{'vs GET':>9}")
    for name, value in rates.items():
        print(f"{name:<34}{value:>12,.0f}{value / base:>8.2f}x")
    r.delete("bench:k", "bench:n", "bench:s", *keys)
    return rates


if __name__ == "__main__" and "--instructions" in sys.argv:
    # Instructions per operation (callgrind), the load-proof counterpart of the
    # rates below, and the targets: bench_instructions.py, topic "basics".
    from bench_instructions import main as count_instructions

    sys.exit(count_instructions(["--only", "basics"]))

if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
