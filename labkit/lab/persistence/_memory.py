"""Memory limits: what ``maxmemory`` does to model state, per eviction policy."""

from __future__ import annotations

from typing import NamedTuple

import redis

from labkit.core.scripts import Script
from labkit.server import Server
from labkit.timeseries import SeriesStore

__all__ = ["FillResult", "OverLimit", "fill_to_limit", "lua_over_limit", "series_lua"]


class FillResult(NamedTuple):
    """What happened when model series were written past a memory limit.

    Attributes:
        policy: The ``maxmemory-policy``.
        refused: Series whose writes were refused (OOM error) at least once.
        intact: Series holding all their points at the end.
        evicted_keys: Keys the server evicted (``INFO stats``).
        series_bytes: ``MEMORY USAGE`` of one full series, in bytes.
    """

    policy: str
    refused: int
    intact: int
    evicted_keys: int
    series_bytes: int


class OverLimit(NamedTuple):
    """Adds a script made against a memory limit.

    Attributes:
        accepted: Adds that ran.
        over_bytes: ``used_memory - maxmemory`` at the end (0 if below).
    """

    accepted: int
    over_bytes: int


def series_lua(flagged: bool = True) -> str:
    """The source of ``SeriesStore``'s add script, with or without ``#!lua``."""
    lua = Script("timeseries_add").source
    return lua if flagged else lua.removeprefix("#!lua\n")


def _limited_server(policy: str) -> Server:
    if not isinstance(policy, str) or not policy:
        raise ValueError(f"policy={policy!r}: expected a maxmemory-policy name")
    return Server(config={"maxmemory-policy": policy})  # started by ``with``


def fill_to_limit(
    policy: str, *, budget: int = 100_000, series: int = 100, points: int = 100
) -> FillResult:
    """Write ``series`` model series of ``points`` points on a limited server.

    A fresh server gets ``maxmemory`` = its current use + ``budget`` bytes;
    then each series is written point by point through :class:`SeriesStore`.

    Args:
        policy: ``maxmemory-policy`` (``noeviction``, ``allkeys-lru``, ...).
        budget: Bytes allowed above the memory in use before the writes.
        series: Number of series (keys) to write.
        points: Points per series.
    """
    with _limited_server(policy) as mem:
        c = mem.client()
        models = SeriesStore(c, max_points=points)
        models.add("warm-up", 0, 0)  # loads the Lua engine: its memory counts too
        c.delete(models.key("warm-up"))
        c.config_set("maxmemory", int(c.info("memory")["used_memory"]) + budget)
        refused = 0
        for m in range(series):
            try:
                for i in range(points):
                    models.add(f"model:{m}", i, i)
            except redis.exceptions.OutOfMemoryError:
                refused += 1
        intact = [m for m in range(series) if models.count(f"model:{m}") == points]
        size = c.memory_usage(models.key(f"model:{intact[0]}")) if intact else 0
        evicted = int(c.info("stats")["evicted_keys"])
    return FillResult(policy, refused, len(intact), evicted, int(size or 0))


def lua_over_limit(
    lua: str, *, writes: int = 2000, budget: int = 100_000, series: int = 50
) -> OverLimit:
    """Run ``writes`` adds of the series script ``lua`` against a memory limit.

    The server uses ``noeviction`` and ``maxmemory`` = current use +
    ``budget``. Each add writes a 50-byte member into one of ``series`` keys
    (count retention of 100 points).
    """
    with _limited_server("noeviction") as mem:
        c = mem.client()

        def add(keys: list[str], args: list[str | int]) -> int:
            # EVAL with the source each time: ``lua`` is a variant of a
            # labkit script (with or without its flags line), not a file.
            return int(c.eval(lua, len(keys), *keys, *args))

        # Members are points ({"t", "v"}): the script refuses a sorted set of
        # anything else as someone else's data. Two adds load the Lua engine
        # and run both of its paths (new key, existing series) before the
        # memory is measured, so the limit is not spent on Lua's own heap.
        add(keys=["s0"], args=[0, '{"t":0,"v":0}', 0, 0])
        add(keys=["s0"], args=[0, '{"t":0,"v":0}', 0, 0])
        c.config_set("maxmemory", int(c.info("memory")["used_memory"]) + budget)
        accepted = 0
        for i in range(1, writes):
            try:
                member = f'{{"t":{i},"v":{i:0{39 - len(str(i))}d}}}'  # 50 bytes
                accepted += add(keys=[f"s{i % series}"], args=[i, member, 100, 0]) > 0
            except redis.exceptions.OutOfMemoryError:
                pass
        info = c.info("memory")
    over = max(0, int(info["used_memory"]) - int(info["maxmemory"]))
    return OverLimit(accepted, over)
