"""Library: distributed locks: a single-server lock with fencing tokens, and Redlock."""

from labkit.locks._lock import Lease, Lock
from labkit.locks._multiplex import Multiplexed
from labkit.locks._redlock import Redlock

__all__ = ["Lease", "Lock", "Multiplexed", "Redlock"]
