"""Instructions per operation, client and server, counted by valgrind's callgrind.

A rate moves with the machine's load; an instruction count does not (the same
binary, inputs and environment give the same count, whatever else the machine
runs). Each contender is counted in two runs of its own: a client process
(``python <script> --client LABEL N URL``) and a fresh server, each under
callgrind, doing N operations and then 0; the difference divided by N is what
one operation costs the client and the server, start-up and imports excluded.
The kernel's share (the socket calls themselves) is not counted: it is the same
one round trip for contenders that make one. The server's timer (``serverCron``)
is not counted either: it runs with the wall clock, not with the operations.

Used by ``bench_instructions.py`` (every topic; ``make bench-instructions``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from labkit.server import find_server_binary

#: A contender: given the server's URL, (one call, operations it performs).
Factory = Callable[[str], tuple[Callable[[], Any], int]]
GRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
# The server's timer (serverCron, hz times a second) runs as often as the wall
# clock says, and a run under callgrind on a loaded machine lasts longer: its
# instructions would move with the load. They are left out (collection is
# toggled off inside serverCron); what a command costs is all still counted.
SERVER_GRIND = [*GRIND, "--toggle-collect=serverCron", "--collect-atstart=yes"]


@dataclass(frozen=True)
class Target:
    """``numerator / denominator`` (total instructions per operation) <= or >= bound.

    ``part`` picks what is compared: "total", "client" or "server".
    """

    name: str
    numerator: str
    denominator: str
    bound: float
    at_most: bool
    part: str = "total"

    def ratio(self, per: Mapping[str, tuple[float, float]]) -> float | None:
        if self.numerator not in per or self.denominator not in per:
            return None
        pick = {"total": sum, "client": lambda p: p[0], "server": lambda p: p[1]}
        den = pick[self.part](per[self.denominator])
        return pick[self.part](per[self.numerator]) / den if den else None


def client_main(
    factories: Mapping[str, Factory], label: str, n: int, url: str, *, warm: int = 20
) -> None:
    """What the client process does under callgrind: n calls of ``label``, after
    ``warm`` calls that load scripts, open connections and fill caches."""
    call, _ops = factories[label](url)
    for _ in range(warm):
        call()
    for _ in range(n):
        call()


def _collected(stderr: str) -> int:
    match = re.search(r"Collected : (\d+)", stderr)
    if match is None:
        raise RuntimeError(f"callgrind reported no count:\n{stderr[-2000:]}")
    return int(match.group(1))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(script: str, label: str, n: int, workdir: str) -> tuple[int, int]:
    """(client, server) instructions of one run of n calls of ``label``."""
    port = _free_port()
    server = subprocess.Popen(
        [*SERVER_GRIND, find_server_binary(), "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        probe = redis.Redis(port=port, socket_timeout=5)
        deadline = time.monotonic() + 180
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        client = subprocess.run(
            [*GRIND, sys.executable, script, "--client", label, str(n),
             f"redis://127.0.0.1:{port}/0"],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if client.returncode:
            raise RuntimeError(f"{label}: the client failed:\n{client.stderr[-3000:]}")
        with contextlib.suppress(redis.ConnectionError):  # it hangs up as it exits
            probe.shutdown(nosave=True)
        return _collected(client.stderr), _collected(server.communicate(timeout=300)[1])
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def count(
    script: str,
    labels: Iterable[str],
    n: int,
    *,
    ops: Mapping[str, int],
    jobs: int = 2,
    progress: Callable[[str], None] = lambda label: None,
) -> dict[str, tuple[float, float]]:
    """(client, server) instructions per operation of each contender.

    Contenders run ``jobs`` at a time: counts do not depend on what else runs.
    ``n`` operations are made of each (``n // ops[label]`` calls, at least 20,
    for a call that performs several).
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("instruction counts need valgrind (apt-get install valgrind)")
    labels = list(labels)
    per: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ir-") as workdir:

        def one(label: str) -> tuple[str, tuple[float, float] | None]:
            per_call = ops.get(label, 1)
            calls = max(20, n // per_call)
            sub = tempfile.mkdtemp(dir=workdir)
            try:
                c0, s0 = _run(script, label, 0, sub)
                c1, s1 = _run(script, label, calls, sub)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                last = str(exc).strip().splitlines()[-1:] or ["?"]
                progress(f"{label}: FAILED ({last[0][:200]})")
                return label, None
            progress(label)
            done = calls * per_call
            return label, ((c1 - c0) / done, (s1 - s0) / done)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for label, result in pool.map(one, labels):
                if result is not None:
                    per[label] = result
    return per


def report(
    per: Mapping[str, tuple[float, float]], targets: Iterable[Target]
) -> tuple[int, int]:
    """Print the counts and each target's ratio with a pass/fail mark.

    Returns:
        (targets met, targets missed); a target whose contenders were not
        counted is skipped.
    """
    width = max([len(label) for label in per] + [20])
    print(f"\n{'contender':<{width}}  {'client':>10}  {'server':>10}  {'total':>10}")
    print(f"{'':<{width}}  {'(instructions per operation)':>34}")
    for label, (c, s) in per.items():
        print(f"{label:<{width}}  {c:>10,.0f}  {s:>10,.0f}  {c + s:>10,.0f}")
    met = missed = 0
    rows = []
    for t in targets:
        ratio = t.ratio(per)
        if ratio is None:
            continue
        ok = ratio <= t.bound if t.at_most else ratio >= t.bound
        met, missed = met + ok, missed + (not ok)
        sign = "<=" if t.at_most else ">="
        what = f"{t.numerator} / {t.denominator}" + (
            f" ({t.part})" if t.part != "total" else ""
        )
        rows.append((t.name, what, f"{ratio:.2f}x", f"{sign} {t.bound:g}x", ok))
    if rows:
        print("\nTargets (instructions per operation, measured in this run):")
        for name, what, ratio, bound, ok in rows:
            mark = "PASS" if ok else "MISS"
            print(f"  {mark}  {name}: {what} = {ratio} (target {bound})")
        print(f"{met} met, {missed} missed")
    return met, missed


def cpu_count() -> int:
    """How many contenders to count at once (one per core)."""
    return max(1, len(os.sched_getaffinity(0)))
