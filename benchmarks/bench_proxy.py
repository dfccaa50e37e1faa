"""The fault-injecting proxy's own cost, and pipelining at injected round trips.

1. A GET straight to the server vs a GET through a ``labkit.lab.proxy.Proxy``
   with nothing injected, measured interleaved in one run: rates, their
   ratio, and the proxy's cost per GET in milliseconds. The target is well
   under 0.1 ms (printed, not enforced: this is a measurement, not a test).
   A third row goes through a bare forwarder (one epoll loop: recv, send,
   nothing else), the floor for any proxy written in Python: what is left
   above direct there is the extra hop itself (two more system calls and
   thread wake-ups per direction), which a loaded machine makes dearer.
2. At injected round trips of 0.2, 1 and 5 ms (``Proxy.set_rtt``): the round
   trip actually added (median PING through the proxy minus direct), GETs
   one at a time vs in pipelines of 100, and the pipelining speed-up. The
   client and the proxy share this Python process (and its GIL), as in a
   notebook.

Usage: python benchmarks/bench_proxy.py [seconds]
"""

from __future__ import annotations

import select
import socket
import statistics
import sys
import threading
import time
from typing import Any

import redis

import labkit
from labkit.lab.measure import compare_rates
from labkit.lab.proxy import Proxy

TARGET_MS = 0.1
RTTS_MS = [0.2, 1.0, 5.0]
PIPELINE = 100


def median_ping_ms(client: redis.Redis, n: int = 200) -> float:
    """Median PING round trip, in milliseconds."""
    client.ping()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def bare_forwarder(upstream: tuple[str, int]) -> tuple[int, threading.Event]:
    """Forward one connection with nothing but epoll, recv and send (Linux)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def run() -> None:
        client, _ = listener.accept()
        server = socket.create_connection(upstream)
        peer = {client.fileno(): server, server.fileno(): client}
        socks = {client.fileno(): client, server.fileno(): server}
        poll = select.epoll()
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            poll.register(sock.fileno(), select.EPOLLIN)
        while not stop.is_set():
            for fd, _ in poll.poll(0.1):
                data = socks[fd].recv(256 * 1024)
                if not data:
                    stop.set()
                    break
                peer[fd].sendall(data)
        for sock in (client, server, listener):
            sock.close()
        poll.close()

    threading.Thread(target=run, daemon=True).start()
    return int(listener.getsockname()[1]), stop


def main(seconds: float = 3.0) -> dict[str, Any]:
    direct = labkit.connect()
    kw = direct.connection_pool.connection_kwargs
    direct.set("bench:proxy", "v")
    keys = ["bench:proxy"] * PIPELINE
    out: dict[str, Any] = {}
    with Proxy(kw["host"], kw["port"], password=kw.get("password")) as px:
        via = px.client(username=kw.get("username"), db=kw.get("db", 0))
        ops = {
            "GET direct": lambda: direct.get("bench:proxy"),
            "GET through the proxy": lambda: via.get("bench:proxy"),
        }
        bare = None
        if hasattr(select, "epoll"):
            bare_port, bare_stop = bare_forwarder((kw["host"], kw["port"]))
            bare = redis.Redis(
                host="127.0.0.1",
                port=bare_port,
                password=kw.get("password"),
                db=kw.get("db", 0),
            )
            ops["GET via bare forwarder"] = lambda: bare.get("bench:proxy")
        rates = compare_rates(ops, seconds=seconds, rounds=15)
        if bare is not None:
            bare.close()
            bare_stop.set()
        base, proxied = rates["GET direct"], rates["GET through the proxy"]
        overhead_ms = (1 / proxied - 1 / base) * 1000
        print(f"{'operation':<26}{'GET/s':>12}{'vs direct':>11}{'cost':>11}")
        for name, value in rates.items():
            cost = (1 / value - 1 / base) * 1000
            print(f"{name:<26}{value:>12,.0f}{value / base:>10.2f}x{cost:>8.3f} ms")
        verdict = "under" if overhead_ms < TARGET_MS else "OVER"
        print(
            f"proxy cost per GET: {overhead_ms:.3f} ms "
            f"({verdict} the {TARGET_MS} ms target)\n"
        )
        out.update(rates=rates, ratio=proxied / base, overhead_ms=overhead_ms)

        def pipelined() -> None:
            pipe = via.pipeline(transaction=False)
            for k in keys:
                pipe.get(k)
            pipe.execute()

        direct_ms = median_ping_ms(direct)
        print(
            f"{'injected RTT':>12}{'added RTT':>11}{'GET/s single':>14}"
            f"{'GET/s pipelined':>17}{'speed-up':>10}"
        )
        for rtt in RTTS_MS:
            px.set_rtt(rtt)
            added = median_ping_ms(via, n=max(20, round(100 / rtt))) - direct_ms
            r = compare_rates(
                {"single": lambda: via.get("bench:proxy"),
                 "pipelined": (pipelined, PIPELINE)},
                seconds=seconds / 2,
            )  # fmt: skip
            speedup = r["pipelined"] / r["single"]
            print(
                f"{rtt:>9.1f} ms{added:>8.2f} ms{r['single']:>14,.0f}"
                f"{r['pipelined']:>17,.0f}{speedup:>9.0f}x"
            )
            out[f"rtt_{rtt:g}"] = {"added_ms": added, "speedup": speedup, **r}
        via.close()
    direct.delete("bench:proxy")
    return out


if __name__ == "__main__" and "--instructions" in sys.argv:
    # Instructions per operation (callgrind), the load-proof counterpart of the
    # rates below, and the targets: bench_instructions.py, topic "proxy".
    from bench_instructions import main as count_instructions

    sys.exit(count_instructions(["--only", "proxy"]))

if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
