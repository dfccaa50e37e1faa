"""Plots for notebook 07: who got what, fan-out cost, slow consumers, game boards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["boards", "delivery_heatmap", "fanout_compare", "omem_growth"]


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


def fanout_compare(
    results: Mapping[int, Mapping[str, Any]],
    *,
    title: str = "One message to n subscribers",
) -> Figure:
    """Latency of the last subscriber per message, and the server's CPU.

    Args:
        results: ``{subscribers: {mode: result}}``, each result with
            ``latency`` (seconds, shape ``(messages, subscribers)``),
            ``server_cpu_us`` and ``server_us``
            (:class:`labkit.lab.pubsub.FanoutResult`).
        title: Figure title.

    One line per mode (median, over messages, of the last subscriber's
    latency); the server's main-thread CPU per ``PUBLISH`` (from the
    ``"processes"`` runs when there are any: their subscribers cost the
    server nothing between messages); and the time inside ``PUBLISH`` from
    ``INFO commandstats``. All in milliseconds.
    """
    ns = sorted(results)
    modes = list(next(iter(results.values())))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for mode, style in zip(modes, ("o-", "s-", "^-"), strict=False):
        ys = [np.median(results[n][mode].latency.max(axis=1)) * 1000 for n in ns]
        ax.plot(ns, ys, style, label=f"subscribers as {mode}: last one, p50")
    on = ["processes"] if "processes" in modes else modes
    cpu = [np.nanmean([results[n][m].server_cpu_us for m in on]) / 1000 for n in ns]
    ax.plot(ns, cpu, "k-", linewidth=2.5, label="server: CPU per PUBLISH (INFO cpu)")
    inside = [np.nanmean([results[n][m].server_us for m in on]) / 1000 for n in ns]
    ax.plot(ns, inside, "k:", label="server: inside PUBLISH (commandstats)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers on the channel")
    ax.set_ylabel("milliseconds")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def omem_growth(
    samples: Sequence[tuple[int, int]],
    *,
    limit: int,
    size: int,
    title: str = "A slow subscriber's output buffer",
) -> Figure:
    """The subscriber's ``omem`` against the megabytes published to it.

    Args:
        samples: ``(messages published, omem bytes)`` pairs
            (:class:`labkit.lab.pubsub.SlowConsumerResult`).
        limit: The output buffer limit in bytes (drawn as a line).
        size: Payload bytes per message.
        title: Figure title.
    """
    mb = [n * size / 1e6 for n, _ in samples]
    kb = [omem / 1024 for _, omem in samples]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(mb, kb, ".-", label="omem (CLIENT LIST)")
    ax.axhline(
        limit / 1024, color="tab:red", linestyle="--", label="output buffer limit"
    )
    ax.set_xlabel("megabytes published to the subscriber")
    ax.set_ylabel("kB queued in the server")
    ax.set_title(title)
    ax.legend(loc="upper left")
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
