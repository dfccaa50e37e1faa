"""Settings of the browser test (from the environment) and its shared record.

Environment:
    LABKIT_CHROMIUM: the Chromium to drive (default /usr/bin/chromium).
    LABKIT_UI_NOTEBOOKS: glob of the notebooks to run, relative to the
        checkout or absolute (default notebooks/[0-9]*.ipynb).
    LABKIT_UI_TIMEOUT: seconds Run All may take per notebook (default 900).
    LABKIT_RUN_TAG: marks the labkit servers the kernels start (make sets it).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTEBOOKS = "notebooks/[0-9]*.ipynb"


def chromium() -> str:
    """The Chromium executable to drive."""
    return os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")


def run_timeout() -> float:
    """Seconds that Run All may take for one notebook."""
    return float(os.environ.get("LABKIT_UI_TIMEOUT", "900"))


def notebook_paths(checkout: Path) -> list[Path]:
    """The notebooks to run, sorted (new ones are picked up by the glob)."""
    pattern = os.environ.get("LABKIT_UI_NOTEBOOKS", NOTEBOOKS)
    return sorted(Path(p).resolve() for p in glob.glob(str(checkout / pattern)))


def lab_root(checkout: Path, notebooks: list[Path]) -> Path:
    """The folder JupyterLab serves: the checkout, or above it for outside ones."""
    return Path(os.path.commonpath([checkout, *(nb.parent for nb in notebooks)]))


@dataclass
class RunState:
    """What the session collects for its checks and its closing summary.

    Attributes:
        shots: the temporary folder for screenshots and JupyterLab's log.
        tag: the LABKIT_RUN_TAG of this run's servers.
        git_before: ``git status`` of the checkout at the start (None outside git).
        results: one summary dict per notebook run.
        problems: what makes the session fail after the tests (leftovers...).
        worker_shots: under pytest-xdist, the workers' screenshot folders.
    """

    shots: Path
    tag: str
    git_before: list[str] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    worker_shots: list[Path] = field(default_factory=list)
