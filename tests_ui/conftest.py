"""Fixtures of the browser test: one JupyterLab and one headless Chromium per run.

The run leaves nothing behind: this process becomes a child subreaper, so every
process started below it (JupyterLab, kernels, their servers, Chromium) stays
its descendant even when orphaned. Each notebook's kernel is shut down after
its test, and any process of it still running then fails that test; at the end
of the session any process of the run that remains, or any labkit server with
this run's tag, is listed, ended, and fails the run. So does a change to the
checkout, as ``git status`` sees it (ignored files included).

Settings come from the environment: see ``ui_settings``.

With pytest-xdist (``make test-ui`` runs two workers), each worker has its own
JupyterLab, Chromium and screenshot folder and ends its own leftovers; the
controller checks the checkout and this run's servers once every worker has
finished, and prints every worker's per-notebook lines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_server import LabServer, become_subreaper, children, descendants, end_processes
from playwright.sync_api import Browser, sync_playwright
from ui_settings import RunState, chromium, lab_root, notebook_paths, run_timeout

from labkit.server.__main__ import labkit_server_processes

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in containers and CI
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a small /dev/shm in containers crashes tabs
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-crash-reporter",  # no crashpad daemons, no ~/.config writes
    "--disable-breakpad",
]
INSTALL_HINT = (
    "make test-ui needs Debian's chromium: sudo apt-get install chromium "
    "(or set LABKIT_CHROMIUM=/path/to/chromium)"
)
STARTUP_TIMEOUT = 180.0  # seconds for JupyterLab to answer on a busy 2-core box
RUN = pytest.StashKey[RunState]()


def checkout(config: pytest.Config) -> Path:
    """The project checkout (pytest's rootdir)."""
    return Path(config.rootpath)


def git_status(root: Path) -> list[str] | None:
    """``git status`` of the checkout, ignored files included (None outside git)."""
    result = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--ignored"],
        capture_output=True,
        text=True,
    )
    return sorted(result.stdout.splitlines()) if result.returncode == 0 else None


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP: stop like Ctrl-C, so that the fixtures clean up (once)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def is_worker(config: pytest.Config) -> bool:
    """This process is a pytest-xdist worker (it runs tests for a controller)."""
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """Become a subreaper, tag this run's servers, make the screenshot folder."""
    become_subreaper()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    tag = os.environ.setdefault("LABKIT_RUN_TAG", f"ui{int(time.time())}")
    shots = Path(tempfile.mkdtemp(prefix="labkit-ui-"))
    config.stash[RUN] = RunState(shots=shots, tag=tag)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per notebook found when the tests are collected."""
    if "notebook" in metafunc.fixturenames:
        notebooks = notebook_paths(checkout(metafunc.config))
        if not notebooks:
            raise pytest.UsageError("no notebook matches LABKIT_UI_NOTEBOOKS")
        metafunc.parametrize("notebook", notebooks, ids=[nb.stem for nb in notebooks])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pytest-timeout's limit: Run All's plus time to open and screenshot."""
    for item in items:
        item.add_marker(pytest.mark.timeout(run_timeout() + 600))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Record the checkout's state, to prove the run did not change it."""
    if not is_worker(session.config):  # the controller checks, once for all
        session.config.stash[RUN].git_before = git_status(checkout(session.config))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: take a finished worker's results and problems."""
    run = node.config.stash[RUN]
    output = json.loads(node.workeroutput.get("labkit_ui", "{}") or "{}")
    run.results.extend(output.get("results", []))
    run.problems.extend(output.get("problems", []))
    if output.get("shots"):
        run.worker_shots.append(Path(output["shots"]))
    if error:
        run.problems.append(f"worker {node.gateway.id} crashed: {error}")


@pytest.hookimpl(trylast=True)  # after pytest has torn the fixtures down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if it changed the checkout or left a process running."""
    run = session.config.stash[RUN]
    if is_worker(session.config):
        # Only this worker's own processes: the other worker is still running
        # under the same tag; the controller checks servers and the checkout.
        ended = end_processes(descendants(os.getpid()), grace=15)
        if ended:
            run.problems.append(f"processes of this run were still running: {ended}")
        session.config.workeroutput["labkit_ui"] = json.dumps(  # type: ignore[attr-defined]
            {"results": run.results, "problems": run.problems, "shots": str(run.shots)}
        )
        return
    after = git_status(checkout(session.config))
    if run.git_before is not None and after is not None and after != run.git_before:
        changed = sorted(set(after) ^ set(run.git_before))
        run.problems.append(f"the run changed the checkout: {changed}")
    ended = end_processes(descendants(os.getpid()), grace=15)
    if ended:
        run.problems.append(f"processes of this run were still running: {ended}")
    servers = labkit_server_processes(run.tag)
    if servers:
        run.problems.append(f"labkit servers of this run still running: {servers}")
    if run.problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print one line per notebook, any leftovers, and where the screenshots are."""
    run = config.stash[RUN]
    if not any(run.shots.iterdir()):
        run.shots.rmdir()  # e.g. --collect-only, or the workers took the screenshots
        if not (run.results or run.problems):
            return
    run.results.sort(key=lambda r: str(r["notebook"]))
    write = terminalreporter.write_line
    terminalreporter.section("labkit browser test")
    for r in run.results:
        timing = (
            f"{r['total']:.0f} s: open {r['open']:.0f} s, "
            f"Run All {r['seconds']:.0f} s, screenshots {r['screenshots']:.0f} s"
        )
        write(
            f"{r['notebook']}: {r['executed']}/{r['code_cells']} code cells ran, "
            f"{r['errors']} error cell(s) (+{r['expected_errors']} tagged "
            f"raises-exception), {r['widgets']} widget(s), {r['images']} image(s), "
            f"{timing}{', TIMED OUT' if r['timed_out'] else ''}"
        )
    for problem in run.problems:
        write(f"FAIL: {problem}", red=True)
    if not run.problems:
        write(f"no process of this run is left running (LABKIT_RUN_TAG={run.tag})")
    for shots in [run.shots, *run.worker_shots]:
        if shots.exists():
            write(f"screenshots and JupyterLab's log: {shots}")


@pytest.fixture(scope="session")
def run_state(request: pytest.FixtureRequest) -> RunState:
    """The session's shared record (screenshot folder, per-notebook results)."""
    return request.config.stash[RUN]


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest, run_state: RunState) -> Iterator[LabServer]:
    """A JupyterLab on 127.0.0.1 serving the checkout, its state in a temp dir."""
    root = checkout(request.config)
    state = Path(tempfile.mkdtemp(prefix="labkit-ui-state-"))
    server = LabServer(
        python=sys.executable,  # the venv's (make runs .venv/bin/python -m pytest)
        root=lab_root(root, notebook_paths(root)),
        state=state,
        log_path=run_state.shots / "jupyterlab.log",
    )
    try:
        server.start(STARTUP_TIMEOUT)
        yield server
    finally:
        ended = server.stop()
        shutil.rmtree(state, ignore_errors=True)
        if ended:
            run_state.problems.append(f"still running after JupyterLab: {ended}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    executable = chromium()
    if not os.access(executable, os.X_OK):
        pytest.exit(f"{executable} not found. {INSTALL_HINT}", returncode=2)
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def kernel_cleanup(lab: LabServer, browser: Browser) -> Iterator[dict[int, str]]:
    """Shut the notebook's kernel down afterwards; fail if any of its processes stay.

    Yields:
        A dict the test fills with {pid: start time} of the processes it saw
        below JupyterLab (the kernel, the servers it started).
    """
    seen: dict[int, str] = {}
    infrastructure = children(os.getpid())  # JupyterLab, Playwright's driver
    yield seen
    seen.update(lab.kernel_processes())
    lab.shutdown_kernels()
    # A kernel's orphans are re-parented to this process (the subreaper).
    for pid, start in children(os.getpid()).items():
        if pid not in infrastructure:
            seen[pid] = start
            seen.update(descendants(pid))
    ended = end_processes(seen, grace=20)
    if ended:
        pytest.fail(
            "still running 20 s after the kernel was shut down (ended now):\n  "
            + "\n  ".join(ended)
        )
