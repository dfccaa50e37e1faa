"""A subscriber process for :func:`labkit.lab.pubsub.measure_fanout` (stdlib only).

Run by path (``python _listen_child.py``), so that it starts in a fraction of
a second without importing labkit, redis-py or numpy. Protocol, one JSON or
text line at a time:

- stdin, first line: ``{"host", "port", "username", "password", "channel",
  "connections", "messages", "timeout"}``;
- stdout: ``ready`` once every connection is authenticated and subscribed;
  then ``got <i>`` each time message ``i`` has reached every connection (the
  parent publishes the next one only then); finally one JSON line
  ``{"arrivals": [[t, ...] per connection]}``, ``t`` being
  ``time.perf_counter()`` when the socket delivered message ``i``;
- stderr and exit status 1 on any error (a timeout included).

One ``selectors`` loop reads every connection: no thread, no GIL handover, so
what it adds to the latency is its own reading, in the order the kernel
reports sockets ready.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from typing import Any


def _encode(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _parse(buf: bytearray, pos: int) -> tuple[Any, int] | None:
    """One RESP2 value in ``buf`` at ``pos``: (value, next pos); None if partial."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = bytes(buf[pos : pos + 1]), bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind in (b"+", b":"):
        return line, pos
    if kind == b"-":
        raise RuntimeError(f"server error: {line.decode(errors='replace')}")
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            return None
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == b"*":
        items = []
        for _ in range(int(line)):
            got = _parse(buf, pos)
            if got is None:
                return None
            item, pos = got
            items.append(item)
        return items, pos
    raise RuntimeError(f"unexpected reply type {kind!r}")


def _replies(buf: bytearray) -> list[Any]:
    """Every complete reply in ``buf`` (consumed from it)."""
    out, pos = [], 0
    while pos < len(buf):
        got = _parse(buf, pos)
        if got is None:
            break
        value, pos = got
        out.append(value)
    del buf[:pos]
    return out


def main() -> int:
    cfg = json.loads(sys.stdin.readline())
    deadline = time.monotonic() + float(cfg["timeout"])
    n, messages = int(cfg["connections"]), int(cfg["messages"])
    sel = selectors.DefaultSelector()
    socks, bufs = [], []
    hello = b""
    if cfg.get("password"):
        user = cfg.get("username")
        parts = ("AUTH", user, cfg["password"]) if user else ("AUTH", cfg["password"])
        hello += _encode(*parts)
    hello += _encode("SUBSCRIBE", cfg["channel"])
    for i in range(n):
        sock = socket.create_connection((cfg["host"], int(cfg["port"])), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(hello)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, i)
        socks.append(sock)
        bufs.append(bytearray())
    subscribed = [False] * n
    arrivals: list[list[float]] = [[0.0] * messages for _ in range(n)]
    reached = [0] * messages  # connections that have message i
    reported = 0
    while reported < messages:
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"timeout: {reported} of {messages} messages", file=sys.stderr)
            return 1
        for key, _ in sel.select(timeout=min(left, 1.0)):
            i = key.data
            chunk = socks[i].recv(1 << 16)
            now = time.perf_counter()
            if not chunk:
                print(f"connection {i} closed by the server", file=sys.stderr)
                return 1
            bufs[i] += chunk
            for reply in _replies(bufs[i]):
                if not isinstance(reply, list) or len(reply) != 3:
                    continue  # +OK from AUTH
                if reply[0] == b"subscribe":
                    subscribed[i] = True
                    if all(subscribed):
                        print("ready", flush=True)
                elif reply[0] == b"message":
                    index = int(reply[2].split(b" ", 1)[0])
                    arrivals[i][index] = now
                    reached[index] += 1
        while reported < messages and reached[reported] == n:
            print(f"got {reported}", flush=True)
            reported += 1
    for sock in socks:
        sock.close()
    print(json.dumps({"arrivals": arrivals}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # reported to the parent on stderr
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
