"""Lua scripts: loaded once from a ``lua/`` folder, called one way, NOSCRIPT handled.

The library's scripts are in ``labkit/lua/``; the lab's own (a tutorial's
script, a benchmark's floor) are in ``labkit/lab/lua/`` and are named with
``Script(name, package="labkit.lab")``.

Every labkit script is a :class:`Script`. A call is ``EVALSHA`` straight away
(one round trip); only if the server answers ``NOSCRIPT`` (a restart, a
``SCRIPT FLUSH``, a failover to a replica that never saw it) is the source
loaded and the call sent again. The same works on a ``RedisCluster``, where
redis-py routes ``EVALSHA`` by its first key and ``SCRIPT LOAD`` goes to every
primary.

Why not ``client.register_script``? Its objects, queued in a pipeline, make
redis-py send ``SCRIPT EXISTS`` before every ``execute()`` (it forgets the
pipeline's scripts afterwards): a second round trip per batch. And a
``ClusterPipeline`` refuses its ``evalsha`` method. :meth:`Script.queue` sends
the raw command instead.

Each ``.lua`` file starts with ``#!lua`` (Redis 7 script flags: the server
checks memory *before* a writing script runs, rather than failing it at its
first write once it has started, and a cluster refuses undeclared keys), then a
header naming its KEYS, ARGV and return value;
``print(Script("queues_enqueue").source)`` shows it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from labkit.core.clients import execute

__all__ = ["FAULTS", "Script", "name_fault", "run_batch", "server_of"]

Arg = str | bytes | int | float

#: What a server that is down, frozen or cut off raises.
FAULTS = (redis.ConnectionError, redis.TimeoutError)


def server_of(client: Any) -> str:
    """Which server ``client`` talks to, for messages: ``host:port/db`` or a path.

    Never the password: it is built from the pool's host, port, path and db.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a RedisCluster routes per key: no single server
        return "a cluster node"
    kw = pool.connection_kwargs
    place = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
    return f"{place}/{kw.get('db', 0)}"


def name_fault(exc: Exception, client: Any, what: str) -> Exception:
    """``exc`` (a connection error or timeout) again, naming the server and ``what``.

    Same type, so ``except redis.TimeoutError`` still catches it; the message
    gains ``[server 127.0.0.1:6379/0; <what>]``. Raise it ``from exc``.
    """
    return type(exc)(f"{exc} [server {server_of(client)}; {what}]")


class Script:
    """One script of ``<package>/lua/<name>.lua``.

    Args:
        name: The file's stem, e.g. ``"ratelimit_gcra"``.
        package: The package whose ``lua/`` folder holds it: ``"labkit"`` (the
            library's scripts, the default) or ``"labkit.lab"`` (the lab's).

    The source is read on first use; the SHA1 is computed locally, so no
    server is needed until the first call.
    """

    def __init__(self, name: str, *, package: str = "labkit") -> None:
        self.name = name
        self.package = package

    def __repr__(self) -> str:
        if self.package == "labkit":
            return f"Script({self.name!r})"
        return f"Script({self.name!r}, package={self.package!r})"

    @cached_property
    def source(self) -> str:
        """The Lua source, header included."""
        path = resources.files(self.package).joinpath("lua", f"{self.name}.lua")
        return path.read_text(encoding="utf-8")

    @cached_property
    def sha(self) -> str:
        """SHA1 of the source, as ``EVALSHA`` wants it."""
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def load(self, client: redis.Redis | redis.RedisCluster) -> None:
        """``SCRIPT LOAD`` the source (on every primary of a cluster)."""
        client.script_load(self.source)

    def __call__(
        self,
        client: redis.Redis | redis.RedisCluster,
        keys: Sequence[str] = (),
        args: Sequence[Arg] = (),
    ) -> Any:
        """Run the script: one ``EVALSHA`` round trip, two after a ``NOSCRIPT``.

        A connection error or timeout is raised as the same type, naming the
        server, the script and its keys (see :func:`name_fault`).
        """
        try:
            try:
                return execute(client, "EVALSHA", self.sha, len(keys), *keys, *args)
            except NoScriptError:
                self.load(client)
                return execute(client, "EVALSHA", self.sha, len(keys), *keys, *args)
        except FAULTS as exc:
            what = f"script {self.name}, keys {list(keys)!r:.200}"
            raise name_fault(exc, client, what) from exc

    def queue(
        self, pipe: Any, keys: Sequence[str] = (), args: Sequence[Arg] = ()
    ) -> None:
        """Add one call to ``pipe`` (a pipeline, plain or cluster, or a MULTI)."""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


def run_batch(
    client: redis.Redis | redis.RedisCluster,
    calls: Sequence[tuple[Script, Sequence[str], Sequence[Arg]]],
) -> list[Any]:
    """Run many script calls in one non-transactional pipeline round trip.

    A call answered ``NOSCRIPT`` did not run, so it is safe to send again once
    the script is loaded: that costs a second round trip, only then. Any other
    error is raised (after the rest of the batch ran, as pipelines do).

    Returns:
        One reply per call, in order.
    """
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        for i in todo:
            script, keys, args = calls[i]
            script.queue(pipe, keys, args)
        try:
            results = pipe.execute(raise_on_error=False)
        except FAULTS as exc:
            names = sorted({calls[i][0].name for i in todo})
            what = f"a batch of {len(todo)} calls of {', '.join(names)}"
            raise name_fault(exc, client, what) from exc
        missing: list[int] = []
        for i, res in zip(todo, results, strict=True):
            if isinstance(res, NoScriptError) and attempt == 0:
                missing.append(i)
            elif isinstance(res, Exception):
                raise res
            else:
                replies[i] = res
        if not missing:
            break
        for script in {calls[i][0] for i in missing}:
            script.load(client)
        todo = missing
    return replies
