"""Shared fixtures: one real server per test session, a flushed client per test.

Set ``REDIS_URL`` to run the suite against a server of your own instead of the
embedded one. The tests FLUSH that database: point it at a spare one
(``redis://localhost:6379/15``). Tests of ``labkit.server`` itself always use
embedded servers, since they start, kill and restart them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

import labkit
from labkit.core.clients import server_version, supports
from labkit.server import flushdb, running_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the server the pattern tests use (REDIS_URL, else an embedded one)."""
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
    """Register the lab's markers."""
    config.addinivalue_line(
        "markers",
        "needs(feature): skip unless the tests' server has the feature "
        "(a key of labkit.core.clients.FEATURES, e.g. 'hash-field-ttl')",
    )


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
