"""Every notebook exercise's solution, run by the tests, must pass its check cell.

Convention (see the README's "Writing a notebook" section):

- the notebook's setup cell carries the tag ``setup``;
- each exercise has an answer cell tagged ``exercise-answer`` where the learner
  writes the answer (it starts as ``None`` placeholders), then a collapsed
  ``<details>`` markdown cell holding the solution as a ```` ```python ````
  block, then a check cell tagged ``exercise-check``;
- a check cell prints ``not answered yet`` while the answer is ``None`` (so Run
  All goes on), raises ``AssertionError`` on a wrong answer, and prints
  ``correct`` on a right one;
- a solution runs on its own after the setup cell (it may use the setup's
  names, not those of other cells); servers it starts are closed afterwards.

This test runs, in one namespace per notebook: the setup cell, then each
solution followed by its check, and requires every check to say ``correct``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from labkit.server import running_servers

matplotlib.use("Agg")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9]*.ipynb"))
_SOLUTION = re.compile(r"<details>.*?```python\n(.*?)```.*?</details>", re.S)


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def exercises(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """(setup source, [(solution source, check source), ...]) of a notebook."""
    cells = json.loads(path.read_text())["cells"]
    setup = [c for c in cells if c["cell_type"] == "code" and "setup" in _tags(c)]
    pairs: list[tuple[str, str]] = []
    solution: str | None = None
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and (m := _SOLUTION.search(text)):
            solution = m.group(1)
        elif cell["cell_type"] == "code" and "exercise-check" in _tags(cell):
            assert solution is not None, f"{path.name}: a check cell with no solution"
            pairs.append((solution, text))
            solution = None
    return ("".join(setup[0]["source"]) if setup else ""), pairs


WITH_EXERCISES = [p for p in NOTEBOOKS if exercises(p)[1]]


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_solutions_pass_their_checks(path: Path) -> None:
    """Each solution, run after the setup cell, makes its check cell say correct."""
    setup, pairs = exercises(path)
    assert setup, f"{path.name}: no code cell tagged 'setup'"
    namespace: dict[str, Any] = {"__name__": "__exercises__"}
    before = set(map(id, running_servers()))
    exec(compile(setup, f"{path.name}:setup", "exec"), namespace)
    try:
        for n, (solution, check) in enumerate(pairs, 1):
            exec(compile(solution, f"{path.name}:solution {n}", "exec"), namespace)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(check, f"{path.name}:check {n}", "exec"), namespace)
            assert re.search(r"\bcorrect\b", out.getvalue(), re.I), (
                f"{path.name} exercise {n}: the check printed {out.getvalue()!r}"
            )
    finally:
        # What the notebook's cleanup cell would stop: servers its setup or
        # its solutions started (the embedded default server stays).
        for server in running_servers(include_default=False):
            if id(server) not in before:
                server.close()
