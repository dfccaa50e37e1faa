"""Run the test suite and every notebook against Redis 7.0 (Debian's redis-server).

Usage: python tools/test_redis7.py [pytest args...]

labkit promises Redis >= 7.0 as well as the bundled Valkey. This starts the
``redis-server`` found on PATH (or ``$REDIS7_BIN``) on 127.0.0.1, with a free
port, a random password and a temporary directory (one server per worker);
checks that it is a 7.x server; then runs, ``REDIS_URL`` pointing at its db 15:

1. ``pytest tests`` in the ``redis-url`` tier (tests/conftest.py): tests that
   exist to exercise embedded Valkey processes skip with that reason, features
   newer than 7.0 skip with theirs;
2. ``pytest --nbval-lax notebooks``: every notebook runs to the end, every
   assert cell included, against the 7.0 server. Outputs are not compared
   (they differ on purpose where a notebook shows what 7.0 lacks).

With ``WORKERS_REDIS7`` (default 2) pytest-xdist workers, one server each
(``tools/redis_url_per_worker.py`` points each worker's ``REDIS_URL`` at its
own), so no two test files or notebooks share a server. Every server is shut
down and its directory removed at the end, whatever happens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis

TOOLS = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(binary: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """One 7.x server on 127.0.0.1: (process, URL of its db 15, its directory)."""
    port, password = _free_port(), secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="labkit-redis7-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
            "--dir",
            workdir,
            "--logfile",
            os.path.join(workdir, "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=password, socket_timeout=2)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _stop(proc, "")
                    sys.exit(f"{binary} did not start; see {workdir}/redis.log")
                time.sleep(0.05)
    finally:
        client.close()
    return proc, f"redis://:{password}@127.0.0.1:{port}/15", workdir


def _stop(proc: subprocess.Popen[bytes], workdir: str) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    binary = os.environ.get("REDIS7_BIN") or shutil.which("redis-server")
    if not binary:
        sys.exit(
            "test-redis7 needs Debian's redis-server 7.x: `apt-get install "
            "redis-server` (as root), or set REDIS7_BIN=/path/to/redis-server"
        )
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True
    ).stdout
    if " v=7." not in version:
        sys.exit(f"{binary} is not a 7.x server: {version.strip()}")
    workers = int(os.environ.get("WORKERS_REDIS7", "2") or 0)
    servers = []
    try:
        for _ in range(max(workers, 1)):
            servers.append(_start(binary))
        urls = [url for _, url, _ in servers]
        print(f"== {version.strip()}: {len(urls)} server(s)", flush=True)
        env = dict(
            os.environ,
            REDIS_URL=urls[0],
            LABKIT_REDIS_URLS=" ".join(urls),
            PYTHONPATH=os.pathsep.join(
                p for p in (TOOLS, os.environ.get("PYTHONPATH", "")) if p
            ),
        )
        pytest = [sys.executable, "-m", "pytest", "-p", "redis_url_per_worker"]
        if workers > 1:
            pytest += ["-n", str(workers), "--dist", "loadfile"]
        tests_env = dict(env, LABKIT_TEST_TIER="redis-url")
        code = subprocess.run(
            [*pytest, "tests", "-r", "fE", *argv], env=tests_env
        ).returncode
        nb = subprocess.run(
            [*pytest, "notebooks", "--nbval-lax", "--nbval-current-env", *argv],
            env=env,
        ).returncode
        return code or nb
    finally:
        for proc, _, workdir in servers:
            _stop(proc, workdir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
