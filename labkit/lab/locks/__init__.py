"""Lab: lock experiments: a fenced storage, a paused holder, Redlock crash trials,
a server whose clock jumps.

Used by notebook 09 and the tests: the holder that pauses is a real process,
stopped with SIGSTOP; the Redlock servers are real servers, killed with SIGKILL
and restarted.
"""

from labkit.lab.locks._clock import FakeClock, libfaketime
from labkit.lab.locks._fencing import FencedStore, PauseExperiment, PauseRound, Write
from labkit.lab.locks._redlock import MODES, RedlockLab, Trial

__all__ = [
    "MODES",
    "FakeClock",
    "FencedStore",
    "PauseExperiment",
    "PauseRound",
    "RedlockLab",
    "Trial",
    "Write",
    "libfaketime",
]
