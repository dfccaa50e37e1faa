"""Run notebooks as a learner who stops to read (make test-pace).

Usage: python tools/test_pace.py [--pause S] [--seed N] [--jobs J] [notebooks ...]

A learner may stop for minutes between any two cells (the course's rule 3).
nbval and Run All execute cells back to back, so a check that compares with a
TTL set ten cells earlier passes there and fails for the learner. This runs
each notebook top to bottom in a fresh kernel (REDIS_URL removed, so each
notebook has its embedded server, as a learner does), pausing ``--pause``
seconds (default 60) before every check cell (a code cell with an ``assert``
statement) and before one other code cell in three, chosen with ``--seed``
(printed, so a failure can be replayed); other cells run back to back. Cells
tagged ``raises-exception`` may raise; any other error fails the notebook.

The notebooks run in parallel (``--jobs``, default all of them: they are
asleep most of the time), one child process each, and nothing is written back.
The summary gives, per notebook, the pauses taken, the wall time and, on a
failure, which cell failed after which pause and the error's last line.
Exit status 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHECK = re.compile(r"^\s*assert\b", re.M)


def pauses(nb: Any, seed: int) -> list[bool]:
    """For each cell, whether the learner pauses before running it."""
    rng = random.Random(seed)
    plan = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            plan.append(False)
            continue
        roll = rng.random() < 1 / 3  # drawn for every code cell: stable plans
        plan.append(bool(CHECK.search(cell.source)) or roll)
    return plan


def run_one(path: Path, pause: float, seed: int) -> dict[str, Any]:
    """Run one notebook at a learner's pace; a JSON-able result."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    plan = pauses(nb, seed)
    client = NotebookClient(
        nb,
        timeout=900,
        startup_timeout=300,  # many kernels start at once
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    taken = 0
    last_pause: int | None = None
    result: dict[str, Any] = {"notebook": path.name, "ok": True}
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if plan[index]:
                time.sleep(pause)
                taken += 1
                last_pause = index
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                last = [line for line in str(exc).splitlines() if line.strip()]
                result.update(
                    ok=False,
                    cell=index,
                    paused_before=plan[index],
                    last_pause=last_pause,
                    error=last[-1][:300] if last else "error",
                )
                break
    result.update(pauses=taken, seconds=round(time.monotonic() - started))
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--pause", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pause < 0:
        parser.error(f"--pause={args.pause}: must be 0 or more seconds")
    if args.one:
        (path,) = args.notebooks
        print(json.dumps(run_one(path, args.pause, args.seed)), flush=True)
        return 0
    seed = (
        args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    )
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    jobs = args.jobs or len(paths)
    print(
        f"test-pace: {len(paths)} notebooks, {args.pause:g} s pauses, seed {seed} "
        f"(replay: --seed {seed}), {jobs} at a time",
        flush=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}

    def child(path: Path) -> dict[str, Any]:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "--pause",
                str(args.pause),
                "--seed",
                str(seed),
                str(path),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"notebook": path.name, "ok": False, "error": tail[:300]}
        result: dict[str, Any] = json.loads(lines[-1])
        line = f"{result['notebook']}: " + (
            "ok" if result["ok"] else f"FAILED at cell {result.get('cell')}"
        )
        print(f"  {line} ({result.get('pauses', '?')} pauses)", flush=True)
        return result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(child, paths))
    wall = time.monotonic() - started
    print(f"\ntest-pace summary (seed {seed}, {args.pause:g} s pauses):")
    for res in results:
        if res["ok"]:
            print(
                f"  ok      {res['notebook']}: {res['pauses']} pauses, "
                f"{res['seconds']} s"
            )
        else:
            if res.get("paused_before"):
                after = "right after a pause"
            elif res.get("last_pause") is not None:
                after = f"last pause before cell {res['last_pause']}"
            else:
                after = "before any pause"
            print(
                f"  FAILED  {res['notebook']}: cell {res.get('cell', '?')} ({after}): "
                f"{res.get('error')}"
            )
    failed = sum(not r["ok"] for r in results)
    taken = sum(r.get("pauses", 0) for r in results)
    print(
        f"{len(results) - failed} passed, {failed} failed "
        f"({taken} pauses, wall time {wall / 60:.1f} min)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
