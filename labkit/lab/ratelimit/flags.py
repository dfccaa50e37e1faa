"""Lab: how long a flag change takes to reach another store's local copy."""

from __future__ import annotations

import time

from labkit.core.args import check_count, check_name, check_seconds
from labkit.flags import FlagStore
from labkit.lab.errors import FlagPropagationError

__all__ = ["propagation_ms"]


def propagation_ms(
    writer: FlagStore,
    reader: FlagStore,
    n: int = 50,
    *,
    flag: str = "probe",
    timeout: float = 5.0,
) -> list[float]:
    """Time ``n`` changes from ``writer.set`` until ``reader``'s copy has them.

    Milliseconds per change, the write's round trip included. ``flag`` is set
    to 0..n-1 and deleted afterwards.

    Raises:
        FlagPropagationError: A change did not reach ``reader`` within
            ``timeout`` seconds.
    """
    check_count("n", n, max=100_000)
    check_name("flag", flag)
    check_seconds("timeout", timeout, max=600)
    delays = []
    try:
        for i in range(n):
            start = time.perf_counter()
            writer.set(flag, value=i)

            def arrived(store: FlagStore, i: int = i) -> bool:
                return bool(store.value(flag) == i)

            if not reader.wait_until(arrived, timeout):
                raise FlagPropagationError(
                    f"change {i} of {flag!r} did not reach {reader!r} in {timeout} s",
                    namespace=reader.namespace,
                    key=reader.key,
                    flag=flag,
                    timeout=timeout,
                )
            delays.append((time.perf_counter() - start) * 1000)
    finally:
        writer.delete(flag)
    return delays
