"""Plots for the caching notebook: claims vs measurements, stampedes, eviction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "claims_vs_measured",
    "eviction_bars",
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
        ax.plot(xs, [series[x] for x in xs], marker=markers.get(mode, "o"), label=mode)
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
        results: :class:`labkit.cache.experiments.EvictionResult` items.
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
    calls.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title or "Expiry: each time the TTL reaches 0, one origin call")
    fig.tight_layout()
    return fig
