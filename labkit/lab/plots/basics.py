"""Plots for chapter 00 (00a, 00b): expiry, hash encodings, round trips, pipelining."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = [
    "batch_bars",
    "expiry_timeline",
    "hash_growth",
    "pipeline_curves",
    "time_per_command",
]


def pipeline_curves(
    curves: Mapping[str, Mapping[int, float]], *, title: str = "", mark: int = 100
) -> Figure:
    """Cost per command and speed-up vs batch size, one line per round trip.

    Args:
        curves: ``{label: {batch_size: median seconds per command}}``, as
            measured by :func:`labkit.lab.basics.pipeline_curves`; batch size
            1 (one command per round trip) is each curve's baseline.
        title: Figure title.
        mark: Batch size whose speed-up is written on the right panel.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to draw")
    for label, curve in curves.items():
        if 1 not in curve:
            raise ValueError(f"curve {label!r} needs batch size 1 as its baseline")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    top = 1.0
    for i, (label, curve) in enumerate(curves.items()):
        sizes = sorted(curve)
        speedup = [curve[1] / curve[b] for b in sizes]
        top = max(top, *speedup)
        left.loglog(sizes, [curve[b] * 1e6 for b in sizes], "o-", color=f"C{i}")
        right.loglog(sizes, speedup, "o-", color=f"C{i}", label=label)
        if mark in curve:
            right.annotate(
                f"{curve[1] / curve[mark]:.0f}x",
                (mark, curve[1] / curve[mark]),
                textcoords="offset points",
                xytext=(-14, 6),
                color=f"C{i}",
                fontweight="bold",
            )
    left.set_xlabel("commands per round trip (pipeline size)")
    left.set_ylabel("µs per command (median)")
    left.set_title("Cost per command")
    right.axhline(1, color="grey", linewidth=0.8, linestyle=":")
    right.set_ylim(0.8, top * 2)
    right.set_xlabel("commands per round trip (pipeline size)")
    right.set_ylabel("speed-up vs one command per round trip")
    right.set_title("Speed-up, measured here")
    right.legend(fontsize="small", loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def expiry_timeline(
    series: Mapping[str, tuple[Sequence[float], Sequence[int], int]],
    *,
    title: str = "",
) -> Figure:
    """Share of keys that the server still counts, around their deadline.

    Args:
        series: ``{label: (seconds since the keys' deadline, negative before
            it; keys still counted; how many keys)}``; counts as sampled with
            :func:`labkit.lab.basics.sample`.
        title: Figure title.
    """
    if not series:
        raise ValueError("series is empty: nothing to draw")
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for i, (label, (times, counts, total)) in enumerate(series.items()):
        if total < 1:
            raise ValueError(f"series {label!r}: total={total!r} must be >= 1")
        share = [100 * c / total for c in counts]
        ax.step(times, share, where="post", color=f"C{i}", label=label)
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.annotate(" deadline", (0, 50), color="grey")
    ax.set_xlabel("seconds since the keys' deadline")
    ax.set_ylabel("% still counted by DBSIZE")
    ax.set_ylim(0, 105)
    ax.set_title(title or "Expired, but not yet removed")
    ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    return fig


def time_per_command(
    parts: Mapping[str, float], *, whole: float | None = None, title: str = ""
) -> Figure:
    """Where the time per command goes: one bar per part, in microseconds.

    Args:
        parts: ``{what: µs per command}``, in the order to draw, top first.
        whole: The measured total per command, drawn as a dashed line.
        title: Figure title.
    """
    if not parts:
        raise ValueError("parts is empty: nothing to draw")
    names = list(parts)
    values = [parts[n] for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(names)))
    ax.barh(names, values, color=[f"C{i}" for i in range(len(names))])
    ax.invert_yaxis()
    for y, v in enumerate(values):
        ax.annotate(f" {v:.2f} µs", (max(v, 0), y), va="center")
    top = max([*values, whole or 0]) * 1.35 or 1
    if whole is not None:
        ax.axvline(whole, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"whole: {whole:.2f} µs ", (whole, len(names) - 0.5),
                    ha="right", va="bottom", color="grey")  # fmt: skip
    ax.set_xlim(0, top)
    ax.set_xlabel("µs per command (median)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def hash_growth(growth: Mapping[int, tuple[str, int]], *, limit: int) -> Figure:
    """A hash's memory as it grows, coloured by its encoding.

    Args:
        growth: ``{fields: (OBJECT ENCODING, MEMORY USAGE in bytes)}``.
        limit: The server's ``hash-max-listpack-entries``, marked by a line.
    """
    if not growth:
        raise ValueError("growth is empty: nothing to draw")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    encodings = sorted({enc for enc, _ in growth.values()}, reverse=True)
    for i, enc in enumerate(encodings):
        sizes = [n for n, (e, _) in sorted(growth.items()) if e == enc]
        used = [growth[n][1] for n in sizes]
        left.plot(sizes, used, ".", color=f"C{i}", label=enc)
        right.plot(sizes, [u / n for u, n in zip(used, sizes, strict=True)], ".",
                   color=f"C{i}", label=enc)  # fmt: skip
    for ax in (left, right):
        ax.axvline(limit, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("fields in the hash")
        ax.legend(title="OBJECT ENCODING", fontsize="small")
    left.set_ylabel("MEMORY USAGE (bytes)")
    left.set_title(f"Whole hash (dashed: hash-max-listpack-entries = {limit})")
    right.set_ylabel("bytes per field")
    right.set_title("Per field")
    right.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def batch_bars(
    seconds: Mapping[str, float], reads: Mapping[str, int], *, title: str = ""
) -> Figure:
    """Time and server reads for the same commands sent two ways, side by side.

    Args:
        seconds: ``{way: seconds for the whole batch}``.
        reads: ``{way: server reads (INFO stats total_reads_processed)}``.
        title: Figure title.
    """
    if set(seconds) != set(reads) or not seconds:
        raise ValueError("seconds and reads must name the same, non-empty ways")
    ways = list(seconds)
    colors = [f"C{i}" for i in range(len(ways))]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
    left.barh(ways, [seconds[w] * 1000 for w in ways], color=colors)
    left.set_xlabel("milliseconds for the whole batch")
    right.barh(ways, [reads[w] for w in ways], color=colors)
    right.set_xlabel("reads the server made")
    right.set_yticks([])
    for ax, values in ((left, [seconds[w] * 1000 for w in ways]),
                       (right, [reads[w] for w in ways])):  # fmt: skip
        for y, v in enumerate(values):
            ax.annotate(f" {v:,.1f}" if isinstance(v, float) else f" {v:,}",
                        (v, y), va="center")  # fmt: skip
        ax.set_xlim(0, max(values) * 1.3 or 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
