"""Plots for notebook 05: who got what, fan-out latency, and game boards."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["boards", "delivery_heatmap", "fanout_latency"]


def delivery_heatmap(
    matrix: Mapping[str, Mapping[str, int]], *, title: str = "Messages received"
) -> Figure:
    """Subscribers (rows) by channels (columns), each cell the count received.

    Args:
        matrix: ``{subscriber: {channel: count}}``, as from
            :func:`labkit.lab.pubsub.delivery_matrix`.
        title: Figure title.
    """
    rows = list(matrix)
    cols = list(next(iter(matrix.values())))
    data = np.array([[matrix[r][c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(cols), 0.9 + 0.6 * len(rows)))
    ax.imshow(data, cmap="Blues", vmin=0, vmax=max(1, data.max()) * 1.3)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, str(data[i, j]), ha="center", va="center", fontsize=12)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), [f"subscriber {r}" for r in rows])
    ax.set_title(title)
    fig.tight_layout()
    return fig


def fanout_latency(
    latencies: Mapping[int, np.ndarray], *, title: str = "Publish-to-receive latency"
) -> Figure:
    """p50 and p99 latency (ms) against the number of subscribers.

    Args:
        latencies: ``{subscribers: seconds}``, each value an array of shape
            ``(messages, subscribers)`` (:func:`labkit.lab.pubsub.measure_fanout`).
        title: Figure title.

    Two views: every delivery (left), and the *last* subscriber to get each
    message (right), which is what a "everyone has it" guarantee waits for.
    """
    ns = sorted(latencies)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    views = {
        "every delivery": {n: np.ravel(latencies[n]) for n in ns},
        "last subscriber per message": {n: latencies[n].max(axis=1) for n in ns},
    }
    for ax, (label, series) in zip(axes, views.items(), strict=True):
        for q, style in ((50, "o-"), (99, "s--")):
            ys = [np.percentile(series[n], q) * 1000 for n in ns]
            ax.plot(ns, ys, style, label=f"p{q}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscribers on the channel")
        ax.set_title(label)
        ax.legend()
    axes[0].set_ylabel("milliseconds")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def boards(views: Mapping[str, str], *, title: str = "") -> Figure:
    """Tic-tac-toe boards side by side, one per server view.

    Args:
        views: ``{label: board}``, each board nine characters (``X``, ``O``,
            ``.``), row by row.
        title: Figure title.
    """
    fig, axes = plt.subplots(1, len(views), figsize=(2.3 * len(views), 2.6))
    for ax, (label, board) in zip(np.atleast_1d(axes), views.items(), strict=True):
        for k in (1, 2):
            ax.axhline(k, color="black", linewidth=1.5)
            ax.axvline(k, color="black", linewidth=1.5)
        for i, mark in enumerate(board):
            if mark != ".":
                color = "tab:blue" if mark == "X" else "tab:red"
                ax.text(i % 3 + 0.5, 2.5 - i // 3, mark, ha="center", va="center",
                        fontsize=24, color=color)  # fmt: skip
        ax.set_xlim(0, 3)
        ax.set_ylim(0, 3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
