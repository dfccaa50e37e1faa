"""Lab: high availability: replicas, WAIT, Sentinel failovers and split brain.

:class:`ReplicatedGroup` starts a primary, replicas and a Sentinel (through
fault-injecting proxies with ``proxied=True``); :func:`failover_test` kills
the primary under a stream of writes; :func:`split_brain_test` partitions it
with one client; :class:`SentinelEvents` records Sentinel's event stream.
"""

from labkit.lab.persistence._failover import (
    FailoverResult,
    SentinelEvent,
    SentinelEvents,
    WriteAttempt,
    failover_test,
)
from labkit.lab.persistence._group import ReplicatedGroup, frozen
from labkit.lab.persistence._splitbrain import MODES, SplitBrainResult, split_brain_test

__all__ = [
    "MODES",
    "FailoverResult",
    "ReplicatedGroup",
    "SentinelEvent",
    "SentinelEvents",
    "SplitBrainResult",
    "WriteAttempt",
    "failover_test",
    "frozen",
    "split_brain_test",
]
