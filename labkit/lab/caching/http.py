"""Lab: the tutorials' HTTP setting: a tiny JSON web app and many concurrent clients.

Several caching tutorials put Redis behind a web handler and make mistakes
that only show under concurrency (a Redis connection opened per request).
:class:`App` serves Python functions as ``GET`` routes from a stdlib
``ThreadingHTTPServer`` (one thread per request, as a threaded framework
would) and :func:`drive` sends it requests from many client threads at once,
each on its own keep-alive HTTP connection.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import numpy as np

from labkit.core.args import check_count, check_seconds

__all__ = ["App", "DriveResult", "drive"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one TCP connection per client
    server: _Server

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            status, body = 404, {"error": f"no route {self.path}"}
        else:
            try:
                status, body = 200, route()
            except Exception as exc:  # the app answers 500, as a framework would
                self.server.errors.append(exc)
                status, body = 500, {"error": repr(exc)}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on the notebook's stderr


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: with 50 clients connecting
    # at once the kernel drops the surplus SYNs, and each dropped client waits
    # for TCP's retransmission (1 s, then 2 s more) before its first request.
    request_queue_size = 128
    routes: Mapping[str, Callable[[], Any]]
    errors: list[BaseException]


class App:
    """A JSON web app on 127.0.0.1: each route is a function returning JSON data.

    Args:
        routes: ``{"/users": get_users, ...}``; each function takes no
            arguments and returns something ``json.dumps`` accepts. An
            exception answers 500 and is kept in :attr:`errors`.

    Use as a context manager (or :meth:`start` / :meth:`close`); the server
    thread is a daemon and :meth:`close` stops it. :attr:`handler` is the
    request handler class, for printing what one request does.
    """

    #: The request handler: ``do_GET`` looks up the route, calls it, answers JSON.
    handler = _Handler

    def __init__(self, routes: Mapping[str, Callable[[], Any]]) -> None:
        if not routes or not all(callable(fn) for fn in routes.values()):
            raise TypeError(f"routes={routes!r}: need {{path: function}} pairs")
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = dict(routes)
        self._server.errors = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by route functions (each answered 500)."""
        return self._server.errors

    def start(self) -> App:
        """Serve in a background (daemon) thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="labkit-http-app",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> App:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class DriveResult(NamedTuple):
    """What :func:`drive` saw.

    Attributes:
        latencies: Seconds per request, as each client measured it.
        statuses: HTTP status -> count (``0``: the request failed outright).
        seconds: Wall time of the whole run.
    """

    latencies: np.ndarray
    statuses: Counter[int]
    seconds: float

    @property
    def requests(self) -> int:
        """Requests sent."""
        return int(sum(self.statuses.values()))


def drive(
    url: str,
    path: str,
    *,
    clients: int = 50,
    requests: int = 10,
    timeout: float = 30.0,
) -> DriveResult:
    """``GET path`` from ``clients`` threads at once, ``requests`` times each.

    Each client opens one keep-alive HTTP connection and sends its requests
    one after another; all clients start together (a barrier).

    Args:
        url: The app's ``http://host:port``.
        path: The route, e.g. ``"/users"``.
        clients: Concurrent clients (1 to 500).
        requests: Requests per client (1 to 100,000).
        timeout: Seconds each request may take (and the run, per client).

    Returns:
        The latencies, the status counts and the wall time.
    """
    clients = check_count("clients", clients, max=500)
    requests = check_count("requests", requests, max=100_000)
    timeout = check_seconds("timeout", timeout, max=600)
    host, port = url.removeprefix("http://").split(":")
    barrier = threading.Barrier(clients + 1)
    times: list[list[float]] = [[] for _ in range(clients)]
    statuses: list[Counter[int]] = [Counter() for _ in range(clients)]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            barrier.wait(timeout)
            for _ in range(requests):
                start = time.perf_counter()
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    response.read()
                    statuses[i][response.status] += 1
                except OSError:
                    statuses[i][0] += 1
                    conn.close()
                times[i].append(time.perf_counter() - start)
        finally:
            conn.close()

    threads = [
        threading.Thread(target=client, args=(i,), name=f"labkit-http-client-{i}")
        for i in range(clients)
    ]
    for t in threads:
        t.daemon = True
        t.start()
    barrier.wait(timeout)
    start = time.perf_counter()
    for t in threads:
        t.join(timeout * requests)
    seconds = time.perf_counter() - start
    total: Counter[int] = Counter()
    for counts in statuses:
        total.update(counts)
    return DriveResult(np.array([t for ts in times for t in ts]), total, seconds)
