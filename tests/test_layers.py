"""Two layers: the library never loads the server machinery or the lab.

The library (one package or module per pattern, plus ``labkit.core`` and
``labkit.errors``) is what an application imports; importing it must not start
a thread, load ``labkit.server`` (its spawner pool and atexit hook) or load any
of ``labkit.lab``. No module imports a private name of another package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABKIT = ROOT / "labkit"

#: The library: patterns, shared plumbing, errors.
LIBRARY = [
    "labkit.cache",
    "labkit.core",
    "labkit.errors",
    "labkit.flags",
    "labkit.locks",
    "labkit.pubsub",
    "labkit.queues",
    "labkit.ratelimit",
    "labkit.sharding",
    "labkit.timeseries",
]
#: What no library module may import.
FORBIDDEN = ("labkit.server", "labkit.lab", "labkit.measure")

# Imports the module and every submodule under it, then reports what was loaded.
PROBE = """
import importlib, json, pkgutil, sys, threading
mod = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(getattr(mod, "__path__", []), mod.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps({
    "modules": sorted(m for m in sys.modules if m.startswith("labkit")),
    "threads": [t.name for t in threading.enumerate()],
}))
"""


def _library_files() -> list[Path]:
    files: list[Path] = []
    for name in LIBRARY:
        path = LABKIT / name.removeprefix("labkit.")
        if path.is_dir():
            files += sorted(path.rglob("*.py"))
        else:
            files.append(path.with_suffix(".py"))
    return files


def _imports(path: Path) -> list[str]:
    """Every module (and ``module.name``) that ``path`` imports, at any depth."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append(node.module)
            out += [f"{node.module}.{alias.name}" for alias in node.names]
    return out


def _package_of(path: Path) -> str:
    """``labkit.lab.sharding`` for ``labkit/lab/sharding/reshard.py``; tests too."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1])


@pytest.mark.parametrize("module", LIBRARY)
def test_library_import_loads_no_server_lab_or_thread(module: str) -> None:
    """`import labkit.<m>` and its submodules load no labkit.server, lab or thread."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    bad = [m for m in loaded["modules"] if m.startswith(FORBIDDEN)]
    assert not bad, f"import {module} loaded {bad}"
    assert loaded["threads"] == ["MainThread"], f"import {module} started threads"


def test_library_files_do_not_import_server_or_lab() -> None:
    """No file of a library package imports labkit.server, labkit.lab or measure."""
    offenders = {
        str(path.relative_to(ROOT)): bad
        for path in _library_files()
        if (bad := [m for m in _imports(path) if m.startswith(FORBIDDEN)])
    }
    assert not offenders, offenders


def test_no_private_name_imported_across_packages() -> None:
    """`from labkit.x._y import z` only inside labkit.x; tests import public names."""
    files = [
        *LABKIT.rglob("*.py"),
        *(ROOT / "tests").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
        *(ROOT / "tools").glob("*.py"),
    ]
    offenders: dict[str, list[str]] = {}
    for path in files:
        home = _package_of(path)
        for target in _imports(path):
            parts = target.split(".")
            if parts[0] != "labkit":
                continue
            private = [
                i
                for i, p in enumerate(parts)
                if p.startswith("_") and not (p.startswith("__") and p.endswith("__"))
            ]
            if not private:
                continue
            owner = ".".join(parts[: private[0]])
            if not (home == owner or home.startswith(owner + ".")):
                offenders.setdefault(str(path.relative_to(ROOT)), []).append(target)
    assert not offenders, offenders
