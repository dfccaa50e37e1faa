"""Static checks of the committed notebooks: what nbval does not look at.

nbval reads stored outputs, but a learner presses Run All in JupyterLab, which
stops at the first error unless the cell carries the ``raises-exception`` tag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9]*.ipynb"))
TAG = "raises-exception"


def _code_cells(path: Path) -> list[tuple[int, dict[str, Any]]]:
    cells = json.loads(path.read_text())["cells"]
    return [(i, c) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _shows_error(cell: dict[str, Any]) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_intended_errors_are_tagged(path: Path) -> None:
    """Every stored error sits in a tagged cell, and every tagged cell stored one."""
    untagged = [
        i for i, c in _code_cells(path) if _shows_error(c) and TAG not in _tags(c)
    ]
    silent = [
        i for i, c in _code_cells(path) if TAG in _tags(c) and not _shows_error(c)
    ]
    assert not untagged, f"cells {untagged} show an error without the {TAG!r} tag"
    assert not silent, f"cells {silent} are tagged {TAG!r} but stored no error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_marker_for_intended_errors(path: Path) -> None:
    """The tag is the one marker: nbval's comment (ignored by JupyterLab) is gone."""
    legacy = [
        i
        for i, c in _code_cells(path)
        if "NBVAL_RAISES_EXCEPTION" in "".join(c["source"])
    ]
    assert not legacy, f"cells {legacy}: use the {TAG!r} tag, not the comment"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_executed_top_to_bottom(path: Path) -> None:
    """Every code cell ran, once, in order, in one kernel (as Run All does)."""
    counts = [c.get("execution_count") for _, c in _code_cells(path)]
    unrun = [
        i for (i, _), n in zip(_code_cells(path), counts, strict=True) if n is None
    ]
    assert not unrun, f"cells {unrun} were never executed: run `make notebooks`"
    assert counts == list(range(1, len(counts) + 1)), (
        "execution counts are not 1..n: re-run the whole notebook (`make notebooks`)"
    )
