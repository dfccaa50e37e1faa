"""Lab: live traffic against a cluster, from a process of its own, timed per operation.

The traffic runs in a separate process so that whatever the notebook does
meanwhile (a key-by-key migration loop in Python, say) cannot slow it down
through the GIL: the latencies it records are the cluster's and the client's.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from labkit.core.args import check_count, check_seconds, check_tag
from labkit.errors import LabkitError
from labkit.lab.measure import Summary, summarize
from labkit.server import Cluster

__all__ = ["MULTI", "SINGLE", "LiveTraffic", "TrafficReport"]

#: Operation kinds in :attr:`TrafficReport.samples`.
SINGLE, MULTI = 0, 1


class TrafficReport(NamedTuple):
    """What a :class:`LiveTraffic` process did.

    Attributes:
        writes, reads: Single-key operations that succeeded.
        multi: Multi-key operations (``MSET``/``MGET`` on one hash tag) that
            succeeded.
        failed: Operations that raised (after the client's own redirects and
            retries), plus reads that returned a wrong value.
        errors: ``{exception type name: count}``.
        acknowledged: ``{key: value}`` of every write the server acknowledged.
        samples: One row per operation: start (``time.monotonic()``, the same
            clock in every process), duration in seconds, kind
            (:data:`SINGLE` or :data:`MULTI`), 1 if it succeeded else 0.
        errors_at: ``time.monotonic()`` of each failure, in order.
    """

    writes: int
    reads: int
    multi: int
    failed: int
    errors: dict[str, int]
    acknowledged: dict[str, str]
    samples: np.ndarray
    errors_at: list[float]

    def latency(
        self, start: float = -np.inf, end: float = np.inf, kind: int | None = None
    ) -> Summary:
        """Percentiles (ms) of the operations that started in ``[start, end)``."""
        s = self.samples
        mask = (s[:, 0] >= start) & (s[:, 0] < end)
        if kind is not None:
            mask &= s[:, 2] == kind
        return summarize(s[mask, 1])

    def ops_between(self, start: float, end: float) -> int:
        """Operations that started in ``[start, end)``."""
        s = self.samples
        return int(((s[:, 0] >= start) & (s[:, 0] < end)).sum())


def _client(host: str, port: int, password: str, safe: bool) -> Any:
    from redis.cluster import RedisCluster

    from labkit.lab.sharding._live import ReshardSafeCluster

    cls = ReshardSafeCluster if safe else RedisCluster
    return cls(
        host=host,
        port=port,
        password=password,
        decode_responses=True,
        socket_timeout=5,
    )


def _run(conn: Any, stop: Any, spec: dict[str, Any]) -> None:
    """The traffic loop, in the child process; reports through ``conn``."""
    try:
        client = _client(spec["host"], spec["port"], spec["password"], spec["safe"])
        client.ping()
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    prefix, keyspace, groups = spec["prefix"], spec["keyspace"], spec["groups"]
    errors: Counter[str] = Counter()
    acked: dict[str, str] = {}
    rows: list[tuple[float, float, int, int]] = []
    errors_at: list[float] = []
    writes = reads = multi = wrong = 0
    deadline = time.monotonic() + spec["max_seconds"]
    clock = time.monotonic
    i = 0
    while not stop.is_set() and clock() < deadline:
        key = f"{prefix}:{i % keyspace}"
        probe = f"{prefix}:{(i * 7919) % min(i + 1, keyspace)}"
        steps: list[tuple[int, Any]] = [(SINGLE, ("SET", key, str(i)))]
        steps.append((SINGLE, ("GET", probe)))
        if groups:
            tag = groups[i % len(groups)]
            pair = [f"{{{tag}}}:{prefix}:a", f"{{{tag}}}:{prefix}:b"]
            steps.append((MULTI, ("MSET", pair[0], str(i), pair[1], str(i))))
            steps.append((MULTI, ("MGET", *pair)))
        for kind, command in steps:
            t0 = clock()
            try:
                reply = client.execute_command(*command)
                ok = 1
                if command[0] == "SET":
                    acked[key] = str(i)
                    writes += 1
                elif command[0] == "GET":
                    reads += 1
                    if reply != acked.get(probe):
                        wrong += 1
                        ok = 0
                else:
                    multi += 1
            except Exception as exc:  # counted, not hidden: the report shows it
                errors[type(exc).__name__] += 1
                errors_at.append(t0)
                ok = 0
            rows.append((t0, clock() - t0, kind, ok))
        i += 1
    client.close()
    if wrong:
        errors["wrong value read"] = wrong
    samples = np.asarray(rows, dtype=float).reshape(-1, 4)
    failed = sum(errors.values())
    conn.send(
        ("done", TrafficReport(
            writes, reads, multi, failed, dict(errors), acked, samples, errors_at
        ))
    )  # fmt: skip


class LiveTraffic:
    """A process that keeps writing and reading through a cluster client.

    Each step writes ``<prefix>:<i % keyspace>`` = ``i`` and reads back an
    earlier acknowledged key, comparing the value. With ``groups`` (hash tag
    values) it also writes and reads two keys of one tag with one ``MSET`` and
    one ``MGET``: multi-key commands, which a half-moved slot can answer with
    ``TRYAGAIN``. Every operation is timed. Use it as a context manager around
    a reshard, then check :meth:`lost` for keys that did not survive.

    Args:
        cluster: The cluster to talk to (its first node is the seed).
        safe: Use :class:`~labkit.lab.sharding.reshard.ReshardSafeCluster`
            (True) or the stock ``RedisCluster`` (False).
        prefix: Key prefix (no braces).
        keyspace: Distinct single keys written, cycling.
        groups: Hash tag values for the multi-key pairs; none by default.
        max_seconds: Upper bound on running time.
        start_timeout: Seconds to wait for the process to connect.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        safe: bool = True,
        prefix: str = "lab:live",
        keyspace: int = 2000,
        groups: Sequence[str] = (),
        max_seconds: float = 60.0,
        start_timeout: float = 60.0,
    ) -> None:
        if not isinstance(cluster, Cluster):
            raise TypeError(f"cluster={cluster!r}: expected a labkit.server.Cluster")
        check_tag("prefix", prefix)
        check_count("keyspace", keyspace, max=10_000_000)
        if isinstance(groups, str | bytes):
            raise TypeError(
                f"groups={groups!r}: must be a list of hash-tag values, not one str"
            )
        groups = [check_tag("groups item", g) for g in groups]
        check_seconds("max_seconds", max_seconds, max=3600)
        self.start_timeout = check_seconds("start_timeout", start_timeout, max=600)
        first = cluster.seed()
        self._spec = {
            "host": first.host,
            "port": first.port,
            "password": cluster.password,
            "safe": bool(safe),
            "prefix": prefix,
            "keyspace": keyspace,
            "groups": list(groups),
            "max_seconds": float(max_seconds),
        }
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_run, args=(child, self._stop, self._spec), daemon=True
        )
        self._child = child
        self._report: TrafficReport | None = None

    def start(self) -> LiveTraffic:
        """Start the process; return once it is connected and sending."""
        self._proc.start()
        self._child.close()
        if not self._conn.poll(self.start_timeout):
            self._kill()
            raise LabkitError(
                f"traffic process did not connect within {self.start_timeout:g} s"
            )
        try:
            kind, detail = self._conn.recv()
        except EOFError:
            self._proc.join(timeout=5)
            code = self._proc.exitcode
            self._kill()
            raise LabkitError(
                f"traffic process exited (code {code}) before connecting"
            ) from None
        if kind == "error":
            self._kill()
            raise LabkitError(f"traffic process could not connect: {detail}")
        return self

    def stop(self, timeout: float = 30.0) -> TrafficReport:
        """Stop the process and return its report."""
        if self._report is not None:
            return self._report
        self._stop.set()
        if not self._conn.poll(timeout):
            self._kill()
            raise LabkitError(f"traffic process did not report within {timeout:g} s")
        try:
            kind, report = self._conn.recv()
        except EOFError:
            kind, report = "died", f"exit code {self._proc.exitcode}"
        self._proc.join(timeout=10)
        self._kill()
        if kind != "done":
            raise LabkitError(f"traffic process failed: {report}")
        self._report = report
        return report

    def _kill(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._conn.close()

    @property
    def running(self) -> bool:
        """True while the traffic process is alive."""
        return self._proc.is_alive()

    def lost(self, client: Any) -> list[str]:
        """Acknowledged keys that now read back missing or different."""
        acked = self.stop().acknowledged
        keys = list(acked)
        values = [client.get(k) for k in keys]
        return [k for k, v in zip(keys, values, strict=True) if v != acked[k]]

    def __enter__(self) -> LiveTraffic:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._report is not None:
            return
        if exc_type is None:
            self.stop()
        else:  # already failing: just make sure the process is gone
            self._stop.set()
            self._kill()
