"""Execute notebooks in place, the way they are committed.

Usage: python tools/execute_notebooks.py notebooks/00a-data-types-and-expiry.ipynb [...]

Runs each notebook top to bottom in a fresh kernel of the current environment
(with REDIS_URL removed, so the embedded server is used) and writes the outputs
back, with volatile metadata stripped so diffs stay small. A cell that raises
on purpose must carry the ``raises-exception`` tag (an old
``# NBVAL_RAISES_EXCEPTION`` first line is turned into it). Commit the result;
`make test` then checks the committed outputs with pytest --nbval.

Stored numbers must come from a quiet machine (the course's rule 4): each
notebook runs alone, only while the 1-minute load average is at most
``QUIET_LOAD`` per core (it waits up to ``LABKIT_QUIET_WAIT`` seconds, default
120, for the machine to calm down, then refuses), and records in its metadata
(``labkit.run``) the load and core count before and after. ``FORCE=1`` runs on
a busy machine anyway and says so; ``tests/test_course.py`` fails on a
committed notebook whose record shows a busy start, so such a run is for
trying things out, not for committing.

Tracebacks of the cells that raise on purpose are stored with this machine's
folders taken out (``labkit/locks/_lock.py``, ``<site-packages>/redis/...``),
so no stored output names a path of the machine it ran on.
"""

from __future__ import annotations

import os
import re
import site
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TAG = "raises-exception"
QUIET_LOAD = 1.0  # 1-minute load average per core


def machine_load() -> dict[str, float]:
    """The 1-minute load average and the core count, now."""
    return {"load_1min": round(os.getloadavg()[0], 2), "cores": os.cpu_count() or 1}


def wait_for_quiet(path: Path) -> dict[str, float]:
    """Wait until the machine is quiet; its load then, or SystemExit."""
    deadline = time.monotonic() + float(os.environ.get("LABKIT_QUIET_WAIT", "120"))
    while True:
        now = machine_load()
        if now["load_1min"] <= QUIET_LOAD * now["cores"]:
            return now
        if os.environ.get("FORCE") == "1":
            print(
                f"{path}: FORCE=1: running at load {now['load_1min']} on "
                f"{now['cores']} cores; do not commit these outputs",
                flush=True,
            )
            return now
        if time.monotonic() > deadline:
            sys.exit(
                f"{path}: the machine is busy (1-minute load {now['load_1min']} on "
                f"{now['cores']} cores, above {QUIET_LOAD} per core): stored "
                "numbers must come from a quiet machine. Stop the other load, or "
                "run with FORCE=1 to try it out (such outputs fail "
                "tests/test_course.py)."
            )
        time.sleep(5)


LEGACY = "# NBVAL_RAISES_EXCEPTION"


def tag_intended_errors(nb: nbformat.NotebookNode) -> None:
    """Give each cell that raises on purpose the ``raises-exception`` tag.

    JupyterLab's Run All, nbclient and nbval all honour the tag (JupyterLab
    ignores nbval's comment), so it is the one marker: an old
    ``# NBVAL_RAISES_EXCEPTION`` first line is turned into the tag.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        if lines and lines[0].strip() == LEGACY:
            cell.source = "\n".join(lines[1:])
            tags = cell.metadata.setdefault("tags", [])
            if TAG not in tags:
                tags.append(TAG)


def machine_folders() -> list[tuple[str, str]]:
    """(folder, what it becomes) pairs, longest first: site-packages, checkout."""
    checkout = str(Path(__file__).resolve().parent.parent) + os.sep
    pairs = [(folder + os.sep, "<site-packages>/") for folder in site.getsitepackages()]
    pairs += [(checkout, ""), (sys.prefix + os.sep, "<venv>/")]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def strip_machine_paths(nb: nbformat.NotebookNode) -> None:
    """Take this machine's folders out of stored error tracebacks."""
    pairs = machine_folders()
    pattern = re.compile("|".join(re.escape(folder) for folder, _ in pairs))
    names = dict(pairs)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [
                    pattern.sub(lambda m: names[m.group(0)], line)
                    for line in output["traceback"]
                ]


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ.pop("REDIS_URL", None)
    tag_intended_errors(nb)
    before = wait_for_quiet(path)
    started = time.perf_counter()
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    seconds = time.perf_counter() - started
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    strip_machine_paths(nb)
    nb.metadata.setdefault("labkit", {})["run"] = {
        "before": before,
        "after": machine_load(),
        "seconds": round(seconds),
    }
    nbformat.write(nb, path)
    print(
        f"{path}: executed in {seconds:.1f} s "
        f"(load {before['load_1min']} on {before['cores']} cores before)"
    )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        execute(Path(arg))
