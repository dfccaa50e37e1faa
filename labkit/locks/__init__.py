"""Distributed locks: a single-server lock with fencing tokens, and Redlock."""

from labkit.locks._lock import Lease, Lock
from labkit.locks._redlock import Redlock, on_each

__all__ = ["Lease", "Lock", "Redlock", "on_each"]
