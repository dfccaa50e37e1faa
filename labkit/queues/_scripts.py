"""The queue package's scripts, and what their error replies mean."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import redis

from labkit.core.scripts import Script
from labkit.errors import QueueFullError, UnknownFanOutError, WrongTypeError

__all__ = [
    "COUNTS",
    "ENQUEUE",
    "FAIL",
    "LEAVE",
    "NEXT",
    "PROMOTE",
    "TOUCH",
    "encode_payload",
    "raise_script_error",
]

ENQUEUE = Script("queues_enqueue")
COUNTS = Script("queues_counts")
TOUCH = Script("queues_touch")
PROMOTE = Script("queues_promote")
NEXT = Script("queues_next")
FAIL = Script("queues_fail")
LEAVE = Script("queues_leave")


def raise_script_error(
    exc: redis.ResponseError, *, queue: str = "", key: str = ""
) -> NoReturn:
    """Turn a queue script's error reply into the labkit error it stands for.

    The scripts check before they write and answer ``BADTYPE <key> <found>
    <expected>``, ``BADRECORD <key> <what>``, ``FULL <held> <bound>`` or
    ``NORECORD <key>``; a server's own ``WRONGTYPE`` (a key changed type under a
    pipeline) is reported the same way. Anything else is raised unchanged.
    """
    words = str(exc).split()
    code = words[0] if words else ""
    if code == "BADTYPE" and len(words) == 4:
        key, found, expected = words[1:]
        raise WrongTypeError(
            f"key {key!r} holds a {found}, where labkit keeps a {expected}: "
            "another program uses this name; pick another queue name or prefix "
            "(nothing was written)",
            key=key,
            found=found,
            expected=expected,
        ) from exc
    if code == "BADRECORD" and len(words) == 3:
        raise WrongTypeError(
            f"key {words[1]!r} does not hold a record labkit wrote ({words[2]}); "
            "nothing was written",
            key=words[1],
            found=words[2],
            expected="a labkit record",
        ) from exc
    if code == "FULL" and len(words) == 3:
        held, bound = int(words[1]), int(words[2])
        raise QueueFullError(
            f"queue {queue!r} holds {held} jobs (waiting, running and delayed) and "
            f"its max_length is {bound}: enqueue refused, nothing written. Slow "
            "down the producer or add workers (backpressure).",
            queue=queue,
            length=held,
            max_length=bound,
        ) from exc
    if code == "NORECORD" and len(words) == 2:
        key = words[1]
        job_id = key.partition("{")[2].partition("}")[0]
        raise UnknownFanOutError(
            f"no completion record for job {job_id!r} ({key}): it was never "
            "created with FanOut.create()/split(), or it expired; nothing written",
            job_id=job_id,
            key=key,
        ) from exc
    if code == "WRONGTYPE":
        raise WrongTypeError(
            f"key {key!r} of queue {queue!r} holds another type of value than "
            f"labkit keeps there: {exc}",
            key=key,
            found="another type",
            expected="a labkit key",
        ) from exc
    raise exc


#: Made once: ``json.dumps`` with options builds an encoder per call.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def encode_payload(payload: Any) -> str:
    """A job's payload as compact JSON; TypeError naming it if JSON cannot hold it."""
    try:
        return _ENCODER.encode(payload)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"payload={payload!r:.80}: must be JSON-serialisable "
            f"(dict, list, str, int, float, bool, None; no NaN): {exc}"
        ) from exc
