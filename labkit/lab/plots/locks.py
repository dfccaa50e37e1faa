"""Lab: plots for notebook 09: a paused holder's timeline, Redlock two-holder counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["pause_timeline", "two_holders"]


def pause_timeline(round_: Any, *, title: str | None = None) -> Figure:
    """Both holders' leases, A's pause and both writes, on one time axis.

    Args:
        round_: A ``labkit.lab.locks.PauseRound``.
        title: Defaults to one naming the storage's mode.
    """
    a, b = round_.a_lease, round_.b_lease
    t0 = a.valid_until - round_.ttl
    fig, ax = plt.subplots(figsize=(8, 2.6))
    rows = {"A (other process)": 1, "B (this notebook)": 0}
    ax.barh(
        1,
        round_.ttl,
        left=0,
        height=0.5,
        color="tab:blue",
        alpha=0.35,
        label="lease (valid)",
    )
    ax.barh(
        1,
        round_.a_resumed - round_.a_paused,
        left=round_.a_paused - t0,
        height=0.5,
        color="none",
        edgecolor="grey",
        hatch="///",
        label="A stopped (SIGSTOP)",
    )
    ax.text(0.01, 1, f" fence {a.fence}", va="center", fontsize=9)
    if b is not None:
        start = b.valid_until - round_.ttl - t0
        ax.barh(
            0,
            round_.b_wrote - (start + t0) + 0.02 * round_.ttl,
            left=start,
            height=0.5,
            color="tab:blue",
            alpha=0.35,
        )
        ax.text(round_.b_wrote - t0, 0, f"   fence {b.fence}", va="center", fontsize=9)
        ax.plot(round_.b_wrote - t0, 0, "o", color="tab:green", ms=9)
    stale = round_.stale_accepted
    a_marker = (
        ("X", "tab:red", "A's stale write accepted")
        if stale
        else (
            ("o", "tab:green", "write accepted")
            if round_.a_accepted
            else ("s", "black", "A's write refused (fence too old)")
        )
    )
    ax.plot(
        round_.a_wrote - t0, 1, a_marker[0], color=a_marker[1], ms=10, label=a_marker[2]
    )
    if b is not None:
        ax.plot([], [], "o", color="tab:green", ms=9, label="B's write accepted")
    ax.set_yticks(list(rows.values()), list(rows))
    ax.set_ylim(-0.6, 1.9)
    ax.set_xlabel("seconds since A acquired")
    mode = "checks fencing tokens" if round_.fencing else "accepts every write"
    ax.set_title(title or f"A pauses past its lease; the storage {mode}")
    ax.legend(loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def two_holders(results: Mapping[str, Sequence[Any]], *, title: str = "") -> Figure:
    """Bars: the share of Redlock trials in which two clients held the lock.

    Args:
        results: mode -> list of ``labkit.lab.locks.Trial``.
    """
    fig, ax = plt.subplots(figsize=(8, 0.7 + 0.5 * len(results)))
    labels = list(results)
    shares = [
        sum(t.two_holders for t in trials) / max(1, len(trials))
        for trials in results.values()
    ]
    ax.barh(labels, shares, color=["tab:red" if s else "tab:green" for s in shares])
    for i, trials in enumerate(results.values()):
        hits = sum(t.two_holders for t in trials)
        # Inside a long bar, beside a short one: the axis ends at 100%.
        inside = shares[i] > 0.6
        ax.text(
            shares[i] - 0.01 if inside else shares[i] + 0.01,
            i,
            f"{hits} of {len(trials)} trials",
            va="center",
            ha="right" if inside else "left",
            color="white" if inside else "black",
        )
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda x, _pos: f"{x:.0%}")
    ax.set_xlabel("share of trials with two holders at once")
    ax.set_title(title or "One server crashes during A's lease: can B get it too?")
    fig.tight_layout()
    return fig
