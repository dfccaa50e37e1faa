"""Pub/sub throughput and latency against the number of subscribers.

For each subscriber count, in one run against the same server:

- throughput: ``MESSAGES`` messages published in pipelines of 100, timed from
  the first publish until every subscriber has the last one; reported as
  messages/s and deliveries/s (messages x subscribers), each as a ratio to one
  subscriber;
- latency: messages sent one at a time (each after all subscribers got the
  previous one), publish-to-receive p50/p99 over every delivery.

All subscribers are threads of this one Python process, so the numbers are
those of a Python client fleet on one machine, not of the server alone.
Usage: python benchmarks/bench_pubsub.py [messages] [latency_messages]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import redis
from tqdm import tqdm

import labkit
from labkit.lab.pubsub import measure_fanout
from labkit.pubsub import Publisher, Subscriber
from labkit.server import fresh_client

COUNTS = [1, 3, 10, 30, 100]


def throughput(client: redis.Redis, subscribers: int, messages: int) -> dict:
    """Messages/s and deliveries/s for ``messages`` pipelined publishes."""
    listen = fresh_client(client, max_connections=subscribers)
    pool = listen.connection_pool
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
        pool.disconnect()
    return {
        "complete": done,
        "msg_s": messages / elapsed,
        "deliveries_s": messages * subscribers / elapsed,
        "missed": sum(s.stats.missed for s in subs),
        "reconnects": sum(s.stats.reconnects for s in subs),
    }


def main(messages: int = 5000, latency_messages: int = 100) -> dict[int, dict]:
    r = labkit.connect()
    rows: dict[int, dict] = {}
    for n in tqdm(COUNTS, desc="subscriber counts"):
        row = throughput(r, n, messages)
        lat = measure_fanout(r, n, latency_messages, channel="bench:lat")
        row["p50_ms"], row["p99_ms"] = np.percentile(lat, [50, 99]) * 1000
        row["last_p50_ms"] = float(np.percentile(lat.max(axis=1), 50) * 1000)
        rows[n] = row
    base = rows[1]
    print(
        f"{'subs':>5}{'msg/s':>10}{'vs 1':>7}{'deliv/s':>11}{'vs 1':>7}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'last p50':>10}{'missed':>8}{'reconn':>8}"
    )
    for n, row in rows.items():
        print(
            f"{n:>5}{row['msg_s']:>10,.0f}{row['msg_s'] / base['msg_s']:>6.2f}x"
            f"{row['deliveries_s']:>11,.0f}"
            f"{row['deliveries_s'] / base['deliveries_s']:>6.2f}x"
            f"{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}{row['last_p50_ms']:>10.3f}"
            f"{row['missed']:>8}{row['reconnects']:>8}"
            + ("" if row["complete"] else "  (incomplete)")
        )
    return rows


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
