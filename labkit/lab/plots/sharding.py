"""Lab: plots for notebook 04: where keys land, what moves, and the cluster's slots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "MASTER_COLORS",
    "keys_per_node",
    "master_color",
    "master_order",
    "migration_timeline",
    "moved_bars",
    "slot_map",
    "spread_vs_vnodes",
]


#: One colour per cluster master across chapter 04: ``master 0`` ... ``master 2``
#: and the ``new master`` that joins later (matplotlib's tab10 blue, orange,
#: green, red). Anything else the plots draw (moves, operations) avoids them.
MASTER_COLORS = {
    "master 0": "tab:blue",
    "master 1": "tab:orange",
    "master 2": "tab:green",
    "new master": "tab:red",
}


def master_color(name: str, index: int = 0) -> str:
    """The chapter's colour for a master label, else matplotlib's ``C<index>``."""
    return MASTER_COLORS.get(name, f"C{index % 10}")


def master_order(names: Sequence[str]) -> list[str]:
    """``names``, masters first in :data:`MASTER_COLORS` order, then the rest."""
    known = [n for n in MASTER_COLORS if n in names]
    return known + [n for n in names if n not in MASTER_COLORS]


def keys_per_node(
    counts: Mapping[str, Mapping[str, float]],
    *,
    title: str = "Keys per node",
    ylabel: str = "keys",
) -> Figure:
    """Grouped bars: for each router (or scheme), how much each node got.

    Args:
        counts: ``{label: {node: amount}}``; every label over the same
            nodes. A dashed line over each group marks its fair share (its
            total / nodes). Cluster masters (``master 0``...) get their
            colours from :data:`MASTER_COLORS`, in that order.
        title: Figure title.
        ylabel: What is counted (keys by default; CPU time, requests...).
    """
    labels = list(counts)
    if not labels:
        raise ValueError("counts is empty: nothing to plot")
    nodes = master_order(list(counts[labels[0]]))
    width = 0.8 / len(nodes)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(labels))
    for j, node in enumerate(nodes):
        values = [counts[label].get(node, 0) for label in labels]
        ax.bar(
            x + (j - (len(nodes) - 1) / 2) * width, values, width, label=node,
            color=master_color(node, j),
        )  # fmt: skip
    for i, label in enumerate(labels):  # each group's own total / nodes
        fair = sum(counts[label].values()) / len(nodes)
        ax.hlines(
            fair, i - 0.45, i + 0.45, color="black", linestyle="--", linewidth=1,
            label="fair share" if i == 0 else "_nolegend_",
        )  # fmt: skip
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def moved_bars(
    moved: Mapping[str, float], *, nodes_before: int, title: str = ""
) -> Figure:
    """Fraction of keys that changed node when one node was added, per router.

    Guides mark the two theoretical values: ``1/(N+1)`` (only the new node's
    share moves, the best possible) and ``N/(N+1)`` (modulo placement).
    """
    n = nodes_before
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * len(moved)))
    labels = list(moved)
    values = [moved[k] * 100 for k in labels]
    ax.barh(labels, values, color="tab:orange")
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.1f}%", va="center")
    for frac, text in ((1 / (n + 1), f"1/{n + 1}"), (n / (n + 1), f"{n}/{n + 1}")):
        ax.axvline(frac * 100, color="grey", linestyle=":", linewidth=1)
        ax.text(frac * 100, -0.6, text, ha="center", va="bottom", color="grey")
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"% of keys that moved going from {n} to {n + 1} nodes")
    ax.set_title(title or "Cost of adding a node")
    fig.tight_layout()
    return fig


def spread_vs_vnodes(
    spreads: Mapping[int, Sequence[float]], *, nodes: int, title: str = ""
) -> Figure:
    """Busiest node's load / fair share vs virtual nodes, over several seeds.

    Args:
        spreads: ``{vnodes: [max_over_mean for each seed]}``.
        nodes: Number of physical nodes (for the title).
        title: Figure title.
    """
    xs = sorted(spreads)
    data = [np.asarray(spreads[v]) for v in xs]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.fill_between(
        xs,
        [d.min() for d in data],
        [d.max() for d in data],
        alpha=0.25,
        label=f"min to max over {len(data[0])} seeds",
    )
    ax.plot(xs, [np.median(d) for d in data], "o-", label="median")
    ax.axhline(1, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("virtual nodes per node")
    ax.set_ylabel("busiest node / fair share")
    ax.set_title(title or f"Hash ring balance, {nodes} nodes")
    ax.legend()
    fig.tight_layout()
    return fig


def slot_map(
    views: Mapping[str, Mapping[str, Sequence[int]]], *, title: str = ""
) -> Figure:
    """One strip per view: which node owns each of the 16384 slots.

    Args:
        views: ``{label: {node name: slots}}``, e.g. before and after a
            reshard. A node keeps its colour across views (masters the
            colours of :data:`MASTER_COLORS`); the legend lists them in order.
        title: Figure title.
    """
    names: list[str] = []
    for view in views.values():
        names += [n for n in view if n not in names]
    names = master_order(names)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.6 * len(views)))
    labelled: set[str] = set()
    for row, view in enumerate(views.values()):
        for j, name in enumerate(names):
            slots = np.asarray(sorted(view.get(name, [])))
            if slots.size == 0:
                continue
            # Contiguous runs become one bar each.
            breaks = np.flatnonzero(np.diff(slots) != 1) + 1
            runs = [(r[0], r[-1] - r[0] + 1) for r in np.split(slots, breaks)]
            label = None if name in labelled else name
            labelled.add(name)
            ax.broken_barh(
                runs, (row - 0.35, 0.7), color=master_color(name, j), label=label
            )
    ax.set_yticks(range(len(views)), list(views))
    ax.invert_yaxis()
    ax.set_xlim(0, 16384)
    ax.set_xlabel("hash slot")
    ax.set_title(title or "Slot owners")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def migration_timeline(
    runs: Mapping[str, tuple[np.ndarray, float, float]],
    *,
    pauses: Mapping[str, tuple[float, float]] | None = None,
    title: str = "",
) -> Figure:
    """Latency of every client operation around a slot migration, one panel per run.

    Args:
        runs: ``{label: (samples, started, ended)}``: ``samples`` rows are
            (start time, duration in seconds, kind, ok) as
            :class:`~labkit.lab.sharding.reshard.TrafficReport` records them;
            ``started``/``ended`` bound the move (same clock). Failed
            operations are drawn as black crosses.
        pauses: ``{label: (start, end)}`` (same clock): a write pause inside
            that run's move, drawn as a hatched band.
        title: Figure title.
    """
    fig, axes = plt.subplots(
        1, len(runs), figsize=(4.5 * len(runs), 3.2), sharey=True, squeeze=False
    )
    for ax, (label, (samples, started, ended)) in zip(
        axes[0], runs.items(), strict=True
    ):
        x = samples[:, 0] - started
        y = np.maximum(samples[:, 1] * 1000, 1e-3)
        multi = samples[:, 2] == 1
        ok = samples[:, 3] == 1
        # Greys and purple: the masters' colours stay the masters'.
        ax.axvspan(0, ended - started, color="0.85", label="move")
        if pauses and label in pauses:
            p0, p1 = pauses[label]
            ax.axvspan(
                p0 - started, p1 - started, facecolor="none", edgecolor="0.2",
                hatch="///", label="writes paused",
            )  # fmt: skip
        ax.scatter(
            x[~multi & ok], y[~multi & ok], s=4, color="0.35", label="single key"
        )
        ax.scatter(
            x[multi & ok], y[multi & ok], s=4, color="tab:purple",
            label="MSET/MGET, one tag",
        )  # fmt: skip
        if (~ok).any():
            ax.scatter(x[~ok], y[~ok], s=16, marker="x", color="black", label="failed")
        ax.set_yscale("log")
        ax.set_xlabel("seconds since the move started")
        ax.set_title(label)
    axes[0][0].set_ylabel("operation latency (ms)")
    axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title or "Client latency during a slot migration")
    fig.tight_layout()
    return fig
