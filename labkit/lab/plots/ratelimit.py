"""Lab: plots for notebooks 03a and 03b: what a rate limiter lets through, over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["burst_curves", "decision_timeline", "log_memory", "trailing_admitted"]

Series = Sequence[float] | np.ndarray


def trailing_admitted(
    series: Mapping[str, tuple[Series, Series]],
    *,
    limit: int,
    period: float,
    title: str = "Admitted in the trailing period",
) -> Figure:
    """Step lines of how many requests were admitted in the last ``period``.

    Args:
        series: label -> (times of admitted requests, trailing counts), as
            returned by :func:`labkit.lab.ratelimit.admitted_per_period`.
        limit: Drawn as the promise (dashed) and twice it (dotted).
        period: Seconds, for the axis label.
    """
    fig, ax = plt.subplots(figsize=(8, 3.6))
    # Where two series agree their lines coincide: each later one is drawn
    # thinner and dashed on top of the earlier, so both stay visible.
    for i, (label, (t, counts)) in enumerate(series.items()):
        ax.step(
            t,
            counts,
            where="post",
            linewidth=max(1.0, 5.0 - 2.0 * i),
            linestyle="-" if i == 0 else "--",
            alpha=0.6 if i == 0 else 1.0,
            label=f"{label} (max {max(counts)})",
        )
    ax.axhline(limit, color="grey", linestyle="--", linewidth=1)
    ax.axhline(2 * limit, color="grey", linestyle=":", linewidth=1)
    right = ax.get_xlim()[1]
    ax.text(right, limit, "limit ", va="bottom", ha="right", color="grey")
    ax.text(right, 2 * limit, "2 x limit ", va="bottom", ha="right", color="grey")
    ax.set_ylim(0, 2.3 * limit)
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"admitted in last {period:g} s")
    ax.set_title(title)
    ax.legend(loc="center left")
    fig.tight_layout()
    return fig


def decision_timeline(
    times: Series,
    decisions: Mapping[str, Series],
    *,
    peaks: Mapping[str, int] | None = None,
    period: float | None = None,
    title: str = "Allowed (green) and refused (red), same traffic",
) -> Figure:
    """One row per limiter: a tick per request, green if allowed, red if refused.

    Args:
        times: Arrival time of each request (seconds).
        decisions: label -> booleans, one per request (True = allowed).
        peaks: If given, label -> the most requests that limiter admitted in
            any ``period`` seconds (:func:`labkit.lab.ratelimit.peak`), shown
            in its row's label.
        period: The period of ``peaks``, in seconds (required with ``peaks``).
    """
    if peaks is not None and period is None:
        raise ValueError("peaks needs period= (the seconds the peaks count over)")
    t = np.asarray(times)
    rows = list(decisions.items())
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.55 * (len(rows) + 1)))
    ax.eventplot(t, lineoffsets=len(rows), linelengths=0.6, colors="tab:blue")
    labels = [f"arrivals ({t.size})"]
    for row, (label, allowed) in enumerate(rows):
        ok = np.asarray(allowed, dtype=bool)
        y = len(rows) - 1 - row
        ax.eventplot(t[~ok], lineoffsets=y, linelengths=0.35, colors="tab:red")
        ax.eventplot(t[ok], lineoffsets=y, linelengths=0.7, colors="tab:green")
        most = ""
        if peaks is not None:
            most = f", max {peaks[label]} per {period:g} s"
        labels.append(f"{label} ({ok.sum()} allowed{most})")
    ax.set_yticks(range(len(rows), -1, -1), labels)
    ax.set_xlabel("seconds")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def burst_curves(
    curves: Mapping[str, tuple[Series, Series]],
    *,
    rate: float,
    title: str = "Cumulative admitted under a flood",
) -> Figure:
    """Cumulative admitted requests over time, one line per setting.

    Args:
        curves: label -> (arrival times, allowed booleans).
        rate: Sustained rate (requests per second), drawn from the origin as
            a dashed guide: each curve runs parallel to it, ``burst`` above.
    """
    fig, ax = plt.subplots(figsize=(8, 3.6))
    end = 0.0
    for label, (t, allowed) in curves.items():
        t, ok = np.asarray(t), np.asarray(allowed, dtype=bool)
        ax.step(t, np.cumsum(ok), where="post", label=label)
        end = max(end, float(t[-1]))
    ax.plot([0, end], [0, rate * end], "k--", linewidth=1, label="sustained rate")
    ax.set_xlabel("seconds")
    ax.set_ylabel("admitted so far")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def log_memory(
    sizes: Mapping[int, int],
    *,
    threshold: int,
    title: str = "Sliding log: bytes per admitted request",
) -> Figure:
    """Bytes per sorted-set entry against the number of entries.

    Args:
        sizes: entries (the limit, all admitted) -> ``MEMORY USAGE`` of the key.
        threshold: ``zset-max-listpack-entries``, drawn as a dotted line: above
            it the server converts the set from a listpack to a skiplist.
    """
    n = np.array(sorted(sizes))
    per_entry = np.array([sizes[k] / k for k in n])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(n, per_entry, marker=".", linewidth=1)
    ax.axvline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.15 * per_entry.max())
    ax.text(
        threshold,
        ax.get_ylim()[1],
        f" zset-max-listpack-entries = {threshold}",
        va="top",
        color="grey",
    )
    ax.set_xlabel("limit (entries in the log)")
    ax.set_ylabel("bytes per entry")
    ax.set_title(title)
    fig.tight_layout()
    return fig
