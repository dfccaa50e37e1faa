"""Run All in a real JupyterLab, in headless Chromium, as a learner does.

Each notebook is opened in a fresh page, its stored outputs are cleared (so
that none of them can pass for this run's), and Run > Run All Cells is clicked
in the menu. Once the kernel has answered every cell it was sent and is idle,
the page is checked: every code cell ran, no cell shows an error unless it
carries the ``raises-exception`` tag, every widget rendered, every image
loaded. Screenshots of each notebook go to the run's temporary folder.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest
from lab_server import KERNEL_NAME, LabServer
from playwright.sync_api import Browser, Page, ViewportSize
from playwright.sync_api import Error as PlaywrightError
from ui_settings import RunState, run_timeout

PROBE = Path(__file__).with_name("probe.js")
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
OPEN_TIMEOUT = 300.0  # seconds to load JupyterLab, then to start a kernel
SETTLE_TIMEOUT = 30.0  # seconds for widget views and images to finish rendering
MAX_SHOTS = 40  # scrolled screenshots per notebook
MAX_TALL = 16000  # pixels: height cap of the one tall screenshot


def probe(page: Page, call: str, arg: Any = None) -> Any:
    """Evaluate ``labkitProbe.<call>(arg)`` in the page (see probe.js)."""
    return page.evaluate(f"arg => window.labkitProbe.{call}(arg)", arg)


def answer_dialog(page: Page) -> str | None:
    """Accept an open JupyterLab dialog (a kernel picker gets python3).

    Returns:
        The dialog's text, or None when no dialog is open.
    """
    dialog = page.locator(".jp-Dialog").first
    if not dialog.is_visible():
        return None
    text = " ".join(dialog.inner_text().split())[:200]
    for select in dialog.locator("select").all():
        for option in select.locator("option").all():
            if f'"{KERNEL_NAME}"' in (option.get_attribute("value") or ""):
                select.select_option(value=option.get_attribute("value"))
    dialog.locator(".jp-Dialog-button.jp-mod-accept").first.click()
    return text


def open_notebook(page: Page, lab: LabServer, relpath: str) -> None:
    """Open ``relpath`` and wait until its kernel is the venv's python3, idle."""
    page.goto(lab.notebook_url(relpath), timeout=OPEN_TIMEOUT * 1000)
    deadline = time.monotonic() + OPEN_TIMEOUT
    while (state := probe(page, "findPanel", relpath)) != "ok":
        assert time.monotonic() < deadline, f"{relpath} did not open: {state}"
        time.sleep(0.5)
    changed = False
    while True:
        answer_dialog(page)
        session = probe(page, "session")
        if session["ready"] and session["kernel"] != KERNEL_NAME and not changed:
            probe(page, "changeKernel", KERNEL_NAME)  # "No Kernel" or another one
            changed = True
        elif session["kernel"] == KERNEL_NAME and session["status"] == "idle":
            break
        assert time.monotonic() < deadline, f"no idle kernel: {session}"
        time.sleep(0.5)
    pythons = lab.kernel_pythons()
    assert pythons == {lab.python}, f"kernel runs {pythons}, not {lab.python}"


def run_all_from_menu(page: Page) -> None:
    """Click Run > Run All Cells in the menu bar."""
    bar_label = page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$"))
    page.locator(".lm-MenuBar-item", has=bar_label).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    page.locator(".lm-Menu-item", has=label).click()


def wait_until_idle(page: Page, lab: LabServer, seen: dict[int, str]) -> dict[str, Any]:
    """Wait (bounded) until every cell Run All sent is answered and the kernel idle.

    Done means: the kernel answered every execute request sent since
    ``labkitProbe.watch()``, it is idle, and no cell shows [*], for 2 s in a row.

    Args:
        page: the notebook's page, Run All just clicked.
        lab: the server, whose kernel processes are recorded into ``seen``.
        seen: {pid: start time} of every process seen below JupyterLab.

    Returns:
        ``timed_out``, ``seconds``, and ``events``: dialogs that opened, a
        kernel that died.
    """
    timeout = run_timeout()
    start = time.monotonic()
    events: list[str] = []  # dialogs, a kernel that died
    quiet_since: float | None = None
    while True:
        elapsed = time.monotonic() - start
        if dialog := answer_dialog(page):  # e.g. "the kernel appears to have died"
            events.append(f"dialog during Run All: {dialog}")
        seen.update(lab.kernel_processes())
        p = probe(page, "progress")
        if p["status"] in ("autorestarting", "restarting", "dead"):
            event = f"the kernel was {p['status']} during Run All"
            events += [] if event in events else [event]
        started = p["sent"] > 0 or elapsed > 10  # 10 s: a notebook without code
        # A kernel that died never answers what it was sent: stop waiting for it.
        answered = p["answered"] >= p["sent"] or events
        if started and answered and p["running"] == 0 and p["status"] == "idle":
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 2:
                return {"timed_out": False, "seconds": elapsed, "events": events}
        else:
            quiet_since = None
        if elapsed > timeout:
            return {"timed_out": True, "seconds": elapsed, "events": events}
        time.sleep(0.5)


def wait_for_rendering(page: Page) -> None:
    """Wait (bounded) until no widget view is loading and no image decoding."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last, same = None, 0
    while time.monotonic() < deadline and same < 4:
        now = probe(page, "pending")
        settled = now["loading"] == 0 and now["images"] == 0
        same = same + 1 if settled and now == last else 0
        last = now
        time.sleep(0.25)


def take_screenshots(page: Page, stem: Path, problem_cell: int | None) -> None:
    """Save the notebook's screenshots, named after ``stem``.

    STEM-01.png, STEM-02.png, ... scroll through it; STEM-problem.png shows
    ``problem_cell`` (if any) at the top; STEM-full.png is one tall picture.
    """
    geometry = probe(page, "scroller")
    view, total = geometry["clientHeight"], geometry["scrollHeight"]
    last_top = max(0, total - view)
    tops = list(range(0, last_top + 1, max(view - 80, 100)))[:MAX_SHOTS]
    if tops[-1] != last_top and len(tops) < MAX_SHOTS:
        tops.append(last_top)
    for k, top in enumerate(tops, 1):
        probe(page, "scrollTo", top)
        page.screenshot(path=f"{stem}-{k:02d}.png")
    if problem_cell is not None:
        probe(page, "showCell", problem_cell)
        page.screenshot(path=f"{stem}-problem.png")
    # The tall one: a window high enough that the notebook needs no scrolling.
    height = min(VIEWPORT["height"] + last_top, MAX_TALL)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    probe(page, "scrollTo", 0)
    time.sleep(1)  # let the layout follow the new window size
    page.screenshot(path=f"{stem}-full.png")


def cell_list(indexes: list[int], limit: int = 12) -> str:
    """``cells[3, 5, 8, ...]`` for a message (indexes into the notebook's cells)."""
    shown = ", ".join(map(str, indexes[:limit]))
    more = f", ... ({len(indexes)} in all)" if len(indexes) > limit else ""
    return f"cells[{shown}{more}]"


def problems(
    cells: list[dict[str, Any]], run: dict[str, Any]
) -> list[tuple[int | None, str]]:
    """What a learner would see go wrong: (cell index or None, message) pairs."""
    found: list[tuple[int | None, str]] = []
    if run["timed_out"]:
        limit = f"{run_timeout():.0f} s (LABKIT_UI_TIMEOUT)"
        # The cell at work: the one showing [*], else the first one unfinished
        # (JupyterLab drops the [*] after an error in a raises-exception cell).
        unfinished = [c for c in cells if c["type"] == "code" and not c["executed"]]
        busy = next((c for c in cells if c["running"]), None) or next(
            iter(unfinished), None
        )
        at = f"; at cells[{busy['index']}] ({busy['source']!r})" if busy else ""
        found.append((busy["index"] if busy else None, f"still busy after {limit}{at}"))
    found += [(None, event) for event in run["events"]]
    for c in cells:
        i, where = c["index"], f"cells[{c['index']}] ({c['source']!r})"
        if not c["expectsError"]:
            hint = (
                "; it is marked NBVAL_RAISES_EXCEPTION but not tagged "
                "raises-exception, so Run All stops there"
                if c["nbvalRaises"]
                else ""
            )
            found += [
                (i, f"{where} raised {e['ename']}: {e['evalue']}{hint}")
                for e in c["errors"]
            ]
        if c["widgetOutputs"] > c["widgetsRendered"] or c["widgetsFailed"]:
            found.append(
                (
                    i,
                    f"{where}: {c['widgetsRendered']} of {c['widgetOutputs']} widget "
                    f"output(s) rendered, {c['widgetsFailed']} show an error or "
                    "'Loading widget...'",
                )
            )
        if c["imagesBroken"]:
            found.append((i, f"{where}: {c['imagesBroken']} broken image(s)"))
    code = [c for c in cells if c["type"] == "code" and not c["blank"]]
    not_run = [c["index"] for c in code if not c["executed"]]
    if not_run:
        found.append(
            (
                not_run[0],
                f"{len(not_run)} of {len(code)} code cells did not run: "
                f"{cell_list(not_run)}",
            )
        )
    return found


def summarize(
    relpath: str, cells: list[dict[str, Any]], run: dict[str, Any]
) -> dict[str, Any]:
    """One notebook's line of the closing summary."""
    code = [c for c in cells if c["type"] == "code"]
    failing = [c for c in code if c["errors"]]
    return {
        "notebook": relpath,
        "code_cells": len(code),
        "executed": sum(c["executed"] for c in code),
        "errors": sum(not c["expectsError"] for c in failing),
        "expected_errors": sum(c["expectsError"] for c in failing),
        "widgets": sum(c["widgetsRendered"] for c in code),
        "images": sum(c["images"] for c in code),
        "seconds": run["seconds"],
        "open": run["open"],
        "screenshots": run["screenshots"],
        "total": run["total"],
        "timed_out": run["timed_out"],
    }


def test_run_all(
    notebook: Path,
    lab: LabServer,
    browser: Browser,
    run_state: RunState,
    kernel_cleanup: dict[int, str],
) -> None:
    """Run > Run All Cells runs the whole notebook and shows no failure."""
    started = time.monotonic()
    relpath = notebook.relative_to(lab.root).as_posix()
    stem = run_state.shots / notebook.stem
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(path=PROBE)
    page = context.new_page()
    try:
        open_notebook(page, lab, relpath)
        opened = time.monotonic()
        kernel_cleanup.update(lab.kernel_processes())
        left = probe(page, "clearOutputs")
        assert left == 0, f"{left} cell(s) kept their stored outputs"
        probe(page, "watch")
        run_all_from_menu(page)
        run = wait_until_idle(page, lab, kernel_cleanup)
        wait_for_rendering(page)
        cells = probe(page, "report")
        found = problems(cells, run)
        first_cell = next((i for i, _ in found if i is not None), None)
        shooting = time.monotonic()
        take_screenshots(page, stem, first_cell)
        shot_seconds = time.monotonic() - shooting
    except Exception:
        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=f"{stem}-failure.png")
        raise
    finally:
        context.close()
    run.update(
        open=opened - started,
        screenshots=shot_seconds,
        total=time.monotonic() - started,
    )
    run_state.results.append(summarize(relpath, cells, run))
    shot = (
        f"\n  first one shown in {stem}-problem.png" if first_cell is not None else ""
    )
    if found:
        messages = "\n  ".join(message for _, message in found)
        pytest.fail(f"{relpath}, after Run All:\n  {messages}{shot}", pytrace=False)
