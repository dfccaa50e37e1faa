"""Lab: chapter 00's experiments (00a, 00b): RESP by hand, round trips, races.

- :class:`Wire` sends bytes the caller wrote by hand over a plain TCP socket
  and returns the bytes that came back, so a learner sees what a command, a
  pipeline and a transaction are on the wire.
- :func:`proxy_for` and :func:`client_via` put a :class:`~labkit.lab.proxy.Proxy`
  between a client and its server (to inject round trips);
  :func:`median_ping_ms` measures the round trip actually obtained, and
  :func:`pipeline_curves` times a pipelining function at several batch sizes
  on several clients, interleaved so that load from elsewhere hits every
  curve alike.
- :func:`in_threads` runs one function in several threads at once (a race);
  :func:`server_usec_per_call` reads the server's own time per command from
  ``INFO commandstats``; :func:`sample` records a value over time.

Nothing here hides a lesson: the commands being taught are written in the
notebook and passed in as functions or bytes; these helpers run the loops.
"""

from labkit.lab.basics._races import in_threads, sample, server_usec_per_call
from labkit.lab.basics._rtt import (
    client_via,
    median_ping_ms,
    pipeline_curves,
    proxy_for,
)
from labkit.lab.basics._wire import Exchange, Wire, parse_replies

__all__ = [
    "Exchange",
    "Wire",
    "client_via",
    "in_threads",
    "median_ping_ms",
    "parse_replies",
    "pipeline_curves",
    "proxy_for",
    "sample",
    "server_usec_per_call",
]
