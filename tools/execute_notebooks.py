"""Execute notebooks in place, the way they are committed.

Usage: python tools/execute_notebooks.py notebooks/00-redis-basics.ipynb [...]

Runs each notebook top to bottom in a fresh kernel of the current environment
(with REDIS_URL removed, so the embedded server is used) and writes the outputs
back, with volatile metadata stripped so diffs stay small. A cell that raises
on purpose must carry the ``raises-exception`` tag (an old
``# NBVAL_RAISES_EXCEPTION`` first line is turned into it). Commit the result;
`make test` then checks the committed outputs with pytest --nbval.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TAG = "raises-exception"
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


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ.pop("REDIS_URL", None)
    tag_intended_errors(nb)
    started = time.perf_counter()
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    print(f"{path}: executed in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        execute(Path(arg))
