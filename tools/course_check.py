"""Check notebooks against the course's rules (shared COURSE.md, README).

Usage: python tools/course_check.py [notebooks/NN-*.ipynb ...]   (default: all)

Prints, per notebook, its size (cells, prose words) and every rule it breaks;
exits 1 if any notebook breaks one. ``tests/test_course.py`` runs the same
checks in ``make test``. The rules checked here are the ones a program can see:

- one sitting: at most 80 cells and 2,500 words of markdown prose;
- a title cell ``# NNx - Title`` alone, a line of prerequisites with a link,
  learning goals, one setup cell tagged ``setup``;
- every ``##`` section has a code cell with an ``assert`` (a check cell);
  "What you learned", exercises with ``exercise-check`` cells, a link to the
  previous and the next notebook of the course, a last ``## Cleanup`` section;
- stored outputs: no error outside cells tagged ``raises-exception``, no
  stderr stream, no machine path, no progress bar stored at 0%.

Reading pace is checked by ``make test-pace``, quiet outputs by the load that
``tools/execute_notebooks.py`` records in each notebook's metadata.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
MAX_CELLS = 80
MAX_WORDS = 2500
QUIET_LOAD = 1.0  # per core; the same as tools/execute_notebooks.py
#: Sections that need no check cell of their own.
NO_CHECK_NEEDED = re.compile(
    r"^(setup|what you learned|exercises?|further|going further|next|where next|"
    r"references|sources)",
    re.I,
)
TITLE = re.compile(r"^# \d\d[a-c]? - \S")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|tmp)/[\w.-]")
TQDM_AT_ZERO = re.compile(r"(?<!\d)0%\|")


def course() -> list[Path]:
    """Every notebook of the course, in order."""
    return sorted(NOTEBOOKS_DIR.glob("[0-9]*.ipynb"))


def _text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def prose_words(cells: list[dict[str, Any]]) -> int:
    """Words of the markdown cells, split on whitespace.

    Everything a learner reads in a markdown cell counts, solutions in their
    ``<details>`` and code fences included: the simplest count, and the one a
    reviewer's word counter gives.
    """
    markdown = (cell for cell in cells if cell["cell_type"] == "markdown")
    return sum(len(_text(cell).split()) for cell in markdown)


def _output_text(output: dict[str, Any]) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    if output.get("output_type") == "error":
        text = "\n".join([output.get("evalue", ""), *output.get("traceback", [])])
        return ANSI.sub("", text)
    data = output.get("data", {})
    text = data.get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)


def problems(path: Path, order: list[Path] | None = None) -> list[str]:
    """Every course rule ``path`` breaks, as readable sentences."""
    order = course() if order is None else order
    cells: list[dict[str, Any]] = json.loads(path.read_text())["cells"]
    found: list[str] = []
    words = prose_words(cells)
    if len(cells) > MAX_CELLS:
        found.append(f"{len(cells)} cells (at most {MAX_CELLS})")
    if words > MAX_WORDS:
        found.append(f"{words} words of prose (at most {MAX_WORDS})")

    first = _text(cells[0]).strip() if cells else ""
    if not (cells and cells[0]["cell_type"] == "markdown" and TITLE.match(first)):
        found.append("the first cell is not a title '# NNx - Title'")
    elif "\n" in first:
        found.append("the title cell holds more than the title")
    opening = [_text(c) for c in cells[1:6] if c["cell_type"] == "markdown"]
    if not any(re.search(r"\]\([^)]+\)", t) for t in opening):
        found.append("no line of prerequisites with a link near the top")
    if not any(re.search(r"\bgoal|you will\b|you'll\b", t, re.I) for t in opening):
        found.append("no learning goals near the top")
    setups = [c for c in cells if c["cell_type"] == "code" and "setup" in _tags(c)]
    if len(setups) != 1:
        found.append(f"{len(setups)} cells tagged 'setup' (want exactly 1)")

    # Sections: each '## ' heading owns the cells up to the next one.
    sections: list[tuple[str, list[dict[str, Any]]]] = []
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in _text(cell).splitlines():
                if line.startswith("## "):
                    sections.append((line[3:].strip(), []))
                    break
        if sections:
            sections[-1][1].append(cell)
    titles = [t for t, _ in sections]
    for title, body in sections:
        if NO_CHECK_NEEDED.match(title):
            continue
        checks = [
            c
            for c in body
            if c["cell_type"] == "code" and re.search(r"^\s*assert\b", _text(c), re.M)
        ]
        if not checks:
            found.append(f"section '{title}' has no check cell (an assert)")
    if not any(re.match(r"what you learned", t, re.I) for t in titles):
        found.append("no 'What you learned' section")
    if not any("exercise-check" in _tags(c) for c in cells):
        found.append("no exercise with a check cell (tag exercise-check)")
    if not titles or not re.match(r"clean", titles[-1], re.I):
        found.append("the last section is not '## Cleanup'")

    markdown = "\n".join(_text(c) for c in cells if c["cell_type"] == "markdown")
    if path in order:
        at = order.index(path)
        for neighbour, word in ((at - 1, "previous"), (at + 1, "next")):
            if 0 <= neighbour < len(order):
                name = order[neighbour].name
                if f"]({name}" not in markdown and f"](./{name}" not in markdown:
                    found.append(f"no link to the {word} part ({name})")

    for number, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error" and "raises-exception" not in _tags(cell):
                found.append(f"cell {number}: an error without 'raises-exception'")
            if kind == "stream" and output.get("name") == "stderr":
                found.append(f"cell {number}: stored stderr output")
            text = _output_text(output)
            if MACHINE_PATH.search(text):
                found.append(f"cell {number}: a machine path in its output")
            if TQDM_AT_ZERO.search(text):
                found.append(f"cell {number}: a progress bar stored at 0%")
    return found


def run_problems(metadata: dict[str, Any]) -> list[str]:
    """What is wrong with the run that stored the outputs (quiet machine)."""
    run = metadata.get("labkit", {}).get("run")
    if not run:
        return ["no record of the run that stored its outputs (make notebooks)"]
    before = run.get("before", {})
    load, cores = before.get("load_1min"), before.get("cores")
    if load is None or not cores:
        return ["its run record lacks the load before the run"]
    if load > QUIET_LOAD * cores:
        return [f"its outputs were stored at load {load} on {cores} cores (busy)"]
    return []


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or course()
    bad = 0
    for path in paths:
        cells = json.loads(path.read_text())["cells"]
        found = problems(path)
        found += run_problems(json.loads(path.read_text()).get("metadata", {}))
        bad += bool(found)
        print(
            f"{path.name}: {len(cells)} cells, {prose_words(cells)} words: "
            + ("ok" if not found else f"{len(found)} problem(s)")
        )
        for problem in found:
            print(f"  - {problem}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
