"""pytest plugin for ``make test-redis7``: each xdist worker gets a server of its own.

``tools/test_redis7.py`` starts one Redis 7.0 server per worker and lists their
URLs, space-separated, in ``LABKIT_REDIS_URLS``. Here each worker (``gw0``,
``gw1``, ...) sets ``REDIS_URL`` to its own before any test runs, so the
fixtures, ``labkit.connect()`` and the notebook kernels it starts (they inherit
its environment) all talk to that worker's server: two test files or notebooks
running at once never flush, subscribe or configure on the same server.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    urls = os.environ.get("LABKIT_REDIS_URLS", "").split()
    if worker.startswith("gw") and urls:
        os.environ["REDIS_URL"] = urls[int(worker[2:]) % len(urls)]
