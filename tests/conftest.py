"""Shared fixtures: one real server per test session, a flushed client per test.

Set ``REDIS_URL`` to run the suite against a server of your own instead of the
embedded one. The tests FLUSH that database: point it at a spare one
(``redis://localhost:6379/15``). Tests of ``labkit.server`` itself always use
embedded servers, since they start, kill and restart them.

``LABKIT_TEST_TIER`` picks a tier (the Makefile sets it):

- ``fast`` (``make test-fast``): only tests that need no server. Any test that
  starts one (an embedded server, or the default one behind ``labkit.connect()``)
  or asks for ``redis_url`` is skipped the moment it tries, so what runs is
  exactly the tests that never touch a server.
- ``redis-url`` (``make test-redis7``): tests that exercise embedded Valkey
  processes (server starts, kills, clusters, Sentinel, proxies; module marker
  ``embedded``, or any start of an embedded server at run time) are skipped
  with that reason; everything else talks to ``REDIS_URL``.
- unset or ``all``: everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

import labkit
from labkit.core.clients import server_version, supports
from labkit.server import Server, flushdb, running_servers

TIER = os.environ.get("LABKIT_TEST_TIER", "all") or "all"
TIERS = ("all", "fast", "redis-url")
NEEDS_SERVER = "needs a server (make test-fast runs only the tests that need none)"
EMBEDDED_ONLY = (
    "exercises embedded Valkey processes; test-redis7 runs the tests that talk "
    "to REDIS_URL"
)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the server the pattern tests use (REDIS_URL, else an embedded one)."""
    if TIER == "fast":
        pytest.skip(NEEDS_SERVER)
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with labkit.server.Server() as server:
        yield server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A ``decode_responses`` client on an empty database."""
    client = labkit.connect(redis_url)
    flushdb(client)  # refuses db 0 of a server labkit did not start
    yield client
    client.close()


def pytest_configure(config: pytest.Config) -> None:
    """Register the lab's markers; in a tier, refuse to start embedded servers."""
    config.addinivalue_line(
        "markers",
        "needs(feature): skip unless the tests' server has the feature "
        "(a key of labkit.core.clients.FEATURES, e.g. 'hash-field-ttl')",
    )
    config.addinivalue_line(
        "markers",
        "embedded: the test exists to exercise embedded Valkey processes "
        "(skipped by test-redis7, which tests REDIS_URL's server)",
    )
    if TIER not in TIERS:
        raise pytest.UsageError(
            f"LABKIT_TEST_TIER={TIER!r}; allowed: {', '.join(TIERS)}"
        )
    if TIER != "all":
        reason = NEEDS_SERVER if TIER == "fast" else EMBEDDED_ONLY

        def refuse(self: Server) -> Server:
            pytest.skip(reason)

        # Every embedded server (Cluster, Sentinel and labkit.connect()'s
        # default one included) starts through Server.start.
        Server.start = refuse  # type: ignore[method-assign, assignment]


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """In the redis-url tier, skip tests marked ``embedded`` before they run."""
    if TIER != "redis-url":
        return
    for item in items:
        if item.get_closest_marker("embedded"):
            item.add_marker(pytest.mark.skip(reason=EMBEDDED_ONLY))


@pytest.fixture(autouse=True)
def _skip_unless_supported(request: pytest.FixtureRequest) -> None:
    """Honour ``@pytest.mark.needs(feature)`` against the server in use."""
    marker = request.node.get_closest_marker("needs")
    if marker is None:
        return
    url = request.getfixturevalue("redis_url")
    client = labkit.connect(url)
    try:
        missing = [f for f in marker.args if not supports(client, f)]
        if missing:
            pytest.skip(f"{server_version(client)} lacks {', '.join(missing)}")
    finally:
        client.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test left an embedded server running."""
    # The process-wide server behind labkit.connect() lives until exit by design.
    leaked = running_servers(include_default=False)
    if leaked:
        for server in leaked:
            server.kill()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nFAIL: tests left {len(leaked)} server(s) running: {leaked}")
