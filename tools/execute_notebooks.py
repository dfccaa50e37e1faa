"""Execute notebooks in place, the way they are committed.

Usage: python tools/execute_notebooks.py notebooks/00-redis-basics.ipynb [...]

Runs each notebook top to bottom in a fresh kernel of the current environment
(with REDIS_URL removed, so the embedded server is used) and writes the outputs
back, with volatile metadata stripped so diffs stay small. Commit the result;
`make test` then checks the committed outputs with pytest --nbval.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

RAISES = "# NBVAL_RAISES_EXCEPTION"
TAG = "raises-exception"


def _raising(cell: dict) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(RAISES)


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ.pop("REDIS_URL", None)
    # nbclient stops at an error unless the cell carries the raises-exception
    # tag; nbval reads the comment. Tag such cells for this run only, so the
    # comment stays the one marker (both at once make nbval warn).
    for cell in nb.cells:
        if _raising(cell):
            tags = cell.metadata.setdefault("tags", [])
            if TAG not in tags:
                tags.append(TAG)
    started = time.perf_counter()
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if _raising(cell):
            tags = [t for t in cell.metadata.get("tags", []) if t != TAG]
            if tags:
                cell.metadata["tags"] = tags
            else:
                cell.metadata.pop("tags", None)
    nbformat.write(nb, path)
    print(f"{path}: executed in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        execute(Path(arg))
