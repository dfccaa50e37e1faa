"""Pub/sub fan-out: the server's share and the client's, and what history costs.

For each subscriber count, in one run against the same server:

- the server's time per ``PUBLISH`` (``INFO commandstats``: queuing the message
  for every subscriber), as a ratio to one subscriber, and the CPU of its main
  thread per ``PUBLISH`` (``INFO cpu``), the socket writes included;
- publish-to-receive latency (p50, and p50 of the *last* subscriber per
  message), messages sent one at a time, with the subscribers (a) in two child
  processes reading with one selectors loop each and (b) as Subscriber threads
  of this process; the threads/processes ratio is what the clients'
  placement adds;
- deliveries per second to Subscriber threads: ``MESSAGES`` pipelined
  publishes, timed until every subscriber has the last one.

Then the cost of keeping history: ``Publisher.publish`` with and without
``history=1000`` (one Lua script: XADD + PEXPIRE + PUBLISH), interleaved.

Usage: python benchmarks/bench_pubsub.py [messages] [latency_messages]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import redis
from tqdm import tqdm

import labkit
from labkit.lab.measure import compare_rates
from labkit.lab.pubsub import measure_fanout
from labkit.pubsub import Publisher, Subscriber
from labkit.server import fresh_client

COUNTS = [1, 3, 10, 30, 100]


def deliveries(client: redis.Redis, subscribers: int, messages: int) -> dict:
    """Deliveries/s for ``messages`` pipelined publishes to Subscriber threads."""
    listen = fresh_client(client, max_connections=subscribers)
    subs = [
        Subscriber(listen, ["bench:tp"], name=f"bench-{i}") for i in range(subscribers)
    ]
    pub = Publisher(client)
    try:
        for s in subs:
            s.start()
        start = time.perf_counter()
        for first in range(0, messages, 100):
            pub.publish_many("bench:tp", range(first, min(first + 100, messages)))
        done = all(s.wait_for(messages, timeout=120) for s in subs)
        elapsed = time.perf_counter() - start
    finally:
        for s in subs:
            s.stop()
        listen.connection_pool.disconnect()
    return {
        "complete": done,
        "deliveries_s": messages * subscribers / elapsed,
        "missed": sum(s.stats.missed for s in subs),
    }


def history_cost(client: redis.Redis) -> dict[str, float]:
    """Publishes/s without and with a 1000-entry history, interleaved."""
    plain, kept = Publisher(client), Publisher(client, history=1000)
    rates = compare_rates(
        {
            "PUBLISH": lambda: plain.publish("bench:hist", "x"),
            "history=1000": lambda: kept.publish("bench:hist", "x"),
        },
        seconds=3.0,
        rounds=6,
    )
    client.delete(kept.history_key("bench:hist"))
    return rates


def main(messages: int = 5000, latency_messages: int = 100) -> dict[int, dict]:
    r = labkit.connect()
    rows: dict[int, dict] = {}
    for n in tqdm(COUNTS, desc="subscriber counts"):
        procs = measure_fanout(r, n, latency_messages, mode="processes")
        threads = measure_fanout(r, n, latency_messages, mode="threads")
        rows[n] = {
            "server_us": np.nanmedian([procs.server_us, threads.server_us]),
            # the server main thread's CPU per PUBLISH, writes included,
            # measured while the cheap (process) subscribers listened
            "cpu_us": procs.server_cpu_us,
            "proc_p50": np.median(procs.latency) * 1e3,
            "proc_last": np.median(procs.last) * 1e3,
            "thr_p50": np.median(threads.latency) * 1e3,
            "thr_last": np.median(threads.last) * 1e3,
            **deliveries(r, n, messages),
        }
    base = rows[1]
    print(
        f"{'subs':>5}{'server us':>10}{'vs 1':>7}{'cpu us':>8}{'proc p50':>10}"
        f"{'last':>8}{'thr p50':>9}{'last':>8}{'thr/proc':>9}"
        f"{'deliv/s':>10}{'missed':>7}"
    )
    for n, row in rows.items():
        print(
            f"{n:>5}{row['server_us']:>10.1f}"
            f"{row['server_us'] / base['server_us']:>6.1f}x"
            f"{row['cpu_us']:>8.0f}"
            f"{row['proc_p50']:>10.3f}{row['proc_last']:>8.3f}"
            f"{row['thr_p50']:>9.3f}{row['thr_last']:>8.3f}"
            f"{row['thr_last'] / row['proc_last']:>8.1f}x"
            f"{row['deliveries_s']:>10,.0f}{row['missed']:>7}"
            + ("" if row["complete"] else "  (incomplete)")
        )
    print("latencies in ms; 'last' = p50 of the last subscriber to get each message")
    hist = history_cost(r)
    ratio = hist["history=1000"] / hist["PUBLISH"]
    print(
        f"publish/s: plain {hist['PUBLISH']:,.0f}, with history "
        f"{hist['history=1000']:,.0f} ({ratio:.2f}x)"
    )
    return rows


if __name__ == "__main__" and "--instructions" in sys.argv:
    # Instructions per operation (callgrind), the load-proof counterpart of the
    # rates below, and the targets: bench_instructions.py, topic "pubsub".
    from bench_instructions import main as count_instructions

    sys.exit(count_instructions(["--only", "pubsub"]))

if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
