"""``python -m labkit.lab.queues worker --name NAME --handler module:function``.

Runs one worker in this process until SIGTERM/SIGINT (it finishes the job in
hand, then exits) or, with ``--burst``, until the queue is drained. The server
comes from ``--url``, else ``REDIS_URL``. The handler is imported by module
path, so it must live in an importable module (put its directory on
``PYTHONPATH``; :class:`~labkit.lab.queues.WorkerProcesses` takes ``path=``).
An error (no server, no such handler) ends the process with status 1 and the
traceback on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import FrameType

import labkit
from labkit.queues import Handler, JobQueue, Worker


def load_handler(spec: str) -> Handler:
    """Import ``module:function`` and return the function."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"handler={spec!r}: expected 'module:function'")
    try:
        return getattr(importlib.import_module(module), attr)
    except AttributeError as exc:
        raise ValueError(
            f"handler={spec!r}: module {module!r} has no {attr!r}"
        ) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.lab.queues")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run one worker")
    w.add_argument("--url", default=None, help="server URL (default: REDIS_URL)")
    w.add_argument("--name", required=True, help="queue name")
    w.add_argument("--handler", default="labkit.lab.queues.demo:record")
    w.add_argument("--consumer", default=None, help="consumer name in the group")
    w.add_argument("--prefix", default="labkit:queue")
    w.add_argument("--visibility", type=float, default=30.0, help="seconds")
    w.add_argument("--batch", type=int, default=10)
    w.add_argument("--block", type=float, default=1.0, help="seconds")
    w.add_argument("--burst", action="store_true", help="exit once drained")
    args = parser.parse_args(argv)
    client = labkit.connect(args.url)
    queue = JobQueue(
        client, args.name, prefix=args.prefix, visibility_timeout=args.visibility
    )
    worker = Worker(
        queue,
        load_handler(args.handler),
        name=args.consumer,
        batch=args.batch,
        block=args.block,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.run(burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
