"""Plots for the caching notebook: claims vs measurements, stampedes, eviction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "claims_vs_measured",
    "eviction_bars",
    "percentile_bars",
    "stampede_curves",
    "ttl_timeline",
]


def claims_vs_measured(
    rows: Mapping[str, tuple[float, float]], *, title: str = ""
) -> Figure:
    """Speed-ups a tutorial claims next to the ones measured here.

    Args:
        rows: ``{label: (claimed_ratio, measured_ratio)}``, e.g.
            ``{"users API": (20, 350.0)}``.
        title: Figure title.

    The x axis is logarithmic: the ratios span orders of magnitude.
    """
    labels = list(rows)
    claimed = np.array([rows[k][0] for k in labels])
    measured = np.array([rows[k][1] for k in labels])
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(9.5, 1.0 + 0.7 * len(labels)))
    ax.barh(y - 0.2, claimed, height=0.38, color="tab:gray", label="tutorial claims")
    ax.barh(y + 0.2, measured, height=0.38, color="tab:blue", label="measured here")
    for i in range(len(labels)):
        ax.text(claimed[i], y[i] - 0.2, f" {claimed[i]:,.0f}x", va="center")
        ax.text(measured[i], y[i] + 0.2, f" {measured[i]:,.0f}x", va="center")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(1, max(claimed.max(), measured.max()) * 8)
    ax.set_xlabel("speed-up of a cache hit over an origin read (p50 / p50, log scale)")
    ax.set_title(title or "Tutorial claims vs this machine")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def percentile_bars(
    systems: Mapping[str, Mapping[str, np.ndarray]], *, title: str = ""
) -> Figure:
    """p50, p95 and p99 latency of a miss and of a hit, for several caches.

    Args:
        systems: ``{system: {"miss": seconds, "hit": seconds}}``, sample arrays
            as :func:`labkit.lab.measure.time_calls` returns them.
        title: Figure title.

    One group of bars per system: misses in orange, hits in blue, the three
    shades p50, p95, p99. The y axis is logarithmic: a miss and a hit are
    orders of magnitude apart.
    """
    pcts = (50, 95, 99)
    shades = {
        "miss": ("#fdd0a2", "#fd8d3c", "#d94801"),
        "hit": ("#c6dbef", "#6baed6", "#2171b5"),
    }
    names = list(systems)
    width = 0.13
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, name in enumerate(names):
        for j, outcome in enumerate(("miss", "hit")):
            ms = np.percentile(np.asarray(systems[name][outcome]) * 1e3, pcts)
            for k, value in enumerate(ms):
                x = i + (3 * j + k - 2.5) * width
                label = f"{outcome} p{pcts[k]}" if i == 0 else None
                ax.bar(x, value, width, color=shades[outcome][k], label=label)
                ax.text(
                    x,
                    value,
                    f"{value:.3g}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)")
    ax.margins(y=0.25)
    ax.set_title(title or "Cache miss vs hit: p50, p95, p99")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def stampede_curves(
    loads: Mapping[str, Mapping[int, float]], *, title: str = ""
) -> Figure:
    """Origin calls per expiry against the number of concurrent readers.

    Args:
        loads: ``{mode: {readers: origin calls per expiry}}``.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(8, 3.8))
    markers = {"none": "o", "lock": "s", "xfetch": "^"}
    for mode, series in loads.items():
        xs = sorted(series)
        dashed = mode == "xfetch"  # dashed, hollow: visible where it meets "none"
        ax.plot(
            xs,
            [series[x] for x in xs],
            marker=markers.get(mode, "o"),
            linestyle="--" if dashed else "-",
            markerfacecolor="none" if dashed else None,
            markersize=9 if dashed else 6,
            label=mode,
        )
    xs_all = sorted({x for s in loads.values() for x in s})
    top = max([v for s in loads.values() for v in s.values()] + [1])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(xs_all, [str(x) for x in xs_all])
    yticks = [2**i for i in range(int(np.log2(top)) + 2)]
    ax.set_yticks(yticks, [str(y) for y in yticks])
    ax.set_ylim(0.8, top * 1.6)
    ax.set_xlabel("concurrent readers of the hot key")
    ax.set_ylabel("origin calls per expiry")
    ax.set_title(title or "Cache stampede: origin calls when one hot key expires")
    ax.legend(title="stampede=")
    fig.tight_layout()
    return fig


def eviction_bars(results: Sequence[Any], *, title: str = "") -> Figure:
    """Hit ratio per ``maxmemory-policy``, with evictions and refused writes.

    Args:
        results: :class:`labkit.lab.caching.EvictionResult` items.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.6 * len(results)))
    labels = [r.policy for r in results]
    ratios = [r.hit_ratio for r in results]
    ax.barh(labels, ratios, color="tab:green")
    ax.invert_yaxis()
    for i, r in enumerate(results):
        ax.text(
            r.hit_ratio,
            i,
            f" {r.hit_ratio:.1%}  evicted {r.evicted:,}, "
            f"refused writes {r.write_errors:,}",
            va="center",
        )
    ax.set_xlim(0, 1.6)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("hit ratio (warm half of a Zipf workload)")
    ax.set_title(title or "Same memory, different eviction policy")
    fig.tight_layout()
    return fig


def ttl_timeline(
    times: np.ndarray, ttl_ms: np.ndarray, loads: np.ndarray, *, title: str = ""
) -> Figure:
    """An entry's remaining TTL over time, with the origin calls it caused.

    Args:
        times: Seconds since the start, one per read.
        ttl_ms: Remaining TTL (ms) seen just before each read; 0 = expired.
        loads: Cumulative origin calls after each read.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(times, ttl_ms, color="tab:blue", marker=".", label="remaining TTL")
    ax.set_xlabel("seconds")
    ax.set_ylabel("remaining TTL (ms)", color="tab:blue")
    ax.set_ylim(bottom=0)
    calls = ax.twinx()
    calls.step(times, loads, where="post", color="tab:red", label="origin calls")
    calls.set_ylabel("origin calls so far", color="tab:red")
    calls.set_ylim(0, max(int(loads.max()), 1) + 1)
    calls.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "Expiry: each time the TTL reaches 0, one origin call")
    fig.tight_layout()
    return fig
