"""Every notebook keeps the course's rules (shared COURSE.md; tools/course_check.py)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from course_check import course, problems, run_problems  # noqa: E402

#: Notebooks not yet cut into their parts or brought within the rules, each
#: with its issue. Strict: a notebook that passes must leave this list.
NOT_YET: dict[str, str] = {
}


def _marks(path: Path) -> list[pytest.MarkDecorator]:
    reason = NOT_YET.get(path.name)
    return [pytest.mark.xfail(reason=reason, strict=True)] if reason else []


NOTEBOOKS = [pytest.param(p, id=p.name, marks=_marks(p)) for p in course()]


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_keeps_the_course_rules(path: Path) -> None:
    """Caps, skeleton, a check per section, neighbours linked, clean outputs."""
    found = problems(path)
    assert not found, f"{path.name}:\n- " + "\n- ".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_outputs_come_from_a_quiet_run(path: Path) -> None:
    """The stored outputs were recorded on a quiet machine (make notebooks)."""
    found = run_problems(json.loads(path.read_text()).get("metadata", {}))
    assert not found, f"{path.name}: {found}"


def test_not_yet_lists_only_notebooks_that_exist() -> None:
    """Every NOT_YET entry names a notebook of the course."""
    names = {p.name for p in course()}
    assert set(NOT_YET) <= names, set(NOT_YET) - names


def test_course_files_are_named_as_the_course_map() -> None:
    """Notebook names are NN[a-c]-words.ipynb, so they sort in course order."""
    for path in course():
        assert re.fullmatch(r"\d\d[a-c]?-[a-z0-9-]+\.ipynb", path.name), path.name
