"""Command line: ``python -m labkit.server [--orphans | --start]``.

``--orphans`` lists server processes that labkit started and that are still
running (it exits 1 if there are any): CI runs it after the test suite to prove
that nothing was left behind. ``--start`` runs one embedded server in the
foreground and prints its URL, for use from another program.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from labkit.server._process import Server


def labkit_server_processes(tag: str | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of every running server that labkit started.

    labkit writes ``labkit-server[.TAG].conf`` into each server's data dir and
    asks the server to show its config file in its process title, so ``ps``
    finds them. With ``tag``, only servers started under ``LABKIT_RUN_TAG=tag``.
    """
    marker = f"labkit-server.{tag}.conf" if tag else "labkit-server."
    out = subprocess.run(
        ["ps", "ax", "-ww", "-o", "pid=,args="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if marker in args and int(pid) != os.getpid() and "ps ax" not in args:
            found.append((int(pid), args.strip()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.server")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--orphans", action="store_true", help="list leftover servers")
    group.add_argument("--start", action="store_true", help="run one server")
    parser.add_argument(
        "--tag",
        default=os.environ.get("LABKIT_RUN_TAG") or None,
        help="only servers started with this LABKIT_RUN_TAG (default: $LABKIT_RUN_TAG)",
    )
    args = parser.parse_args(argv)
    if args.orphans:
        procs = labkit_server_processes(args.tag)
        for pid, cmd in procs:
            print(f"left running: pid {pid}: {cmd}")
        print(f"{len(procs)} labkit server process(es) running")
        return 1 if procs else 0
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with Server() as server:
        print(server.url, flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
