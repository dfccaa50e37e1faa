"""The library as a developer installs it: a wheel that needs only redis-py.

Builds the wheel, installs it in a clean venv without extras (and, second,
beside the newest ``limits[redis]`` and ``rq``, which hold redis-py below 8),
then runs ``tests/packaging/smoke.py`` there: every library module imports, no
lab dependency came along, and every pattern answers one call against the
tests' server (REDIS_URL's, or the embedded one). Needs the package index (or
pip's cache), as any install does.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "tests" / "packaging" / "smoke.py"
LOCK = ROOT / "requirements" / "lock.txt"


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, (
        f"{args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel of this checkout, built as pip would build it."""
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, ROOT)
    (built,) = out.glob("redis_labkit-*.whl")
    yield built


def _venv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    return path / "bin" / "python"


def _smoke(python: Path, redis_url: str) -> str:
    env = {"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"}
    return _run(python, SMOKE, env=env)


def test_wheel_ships_the_library_and_lab_scripts(wheel: Path) -> None:
    """Every Lua script of the checkout (library and lab) is in the wheel."""
    import zipfile

    shipped = set(zipfile.ZipFile(wheel).namelist())
    scripts = sorted(ROOT.glob("labkit/lua/*.lua")) + sorted(
        ROOT.glob("labkit/lab/lua/*.lua")
    )
    assert len(scripts) > 30
    missing = [str(p.relative_to(ROOT)) for p in scripts]
    assert [m for m in missing if m not in shipped] == []


def test_wheel_alone_pulls_only_redis_py_and_every_pattern_works(
    wheel: Path, tmp_path: Path, redis_url: str
) -> None:
    """pip install <wheel> brings redis-py and nothing else; each pattern works."""
    python = _venv(tmp_path / "venv")
    _run(python, "-m", "pip", "install", "--quiet", "-c", LOCK, wheel)
    installed = _run(python, "-m", "pip", "list", "--format=freeze").split()
    names = sorted(line.split("==")[0].lower() for line in installed)
    assert [n for n in names if n not in ("pip", "setuptools")] == [
        "redis",
        "redis-labkit",
    ]
    assert "smoke: ok" in _smoke(python, redis_url)


def test_wheel_installs_beside_limits_and_rq(
    wheel: Path, tmp_path: Path, redis_url: str
) -> None:
    """The newest limits[redis] and rq install beside the wheel, and it works."""
    python = _venv(tmp_path / "venv")
    _run(python, "-m", "pip", "install", "--quiet", wheel, "limits[redis]", "rq")
    out = _smoke(python, redis_url)
    assert "smoke: ok" in out
    print(out.splitlines()[0])  # which redis-py the three agreed on
