"""Plots for the caching notebooks: hit claims, stampedes, eviction, stale windows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "eviction_at_capacity",
    "eviction_bars",
    "eviction_vs_optimum",
    "hit_claims",
    "hit_cost_by_size",
    "percentile_bars",
    "stale_window",
    "stampede_curves",
    "ttl_timeline",
]


def hit_claims(
    rows: Mapping[str, tuple[float, float, float]], *, title: str = ""
) -> Figure:
    """The cached read a tutorial claims next to the hit measured here.

    Args:
        rows: ``{label: (claimed_ms, p50_ms, p99_ms)}``: the tutorial's upper
            bound for a cached read, and this run's median and 99th percentile.
        title: Figure title.

    The x axis is logarithmic: hits of a few hundred bytes and of a megabyte
    differ by orders of magnitude.
    """
    labels = list(rows)
    claimed, p50, p99 = (np.array([rows[k][i] for k in labels]) for i in range(3))
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(9.5, 1.2 + 0.8 * len(labels)))
    ax.barh(y - 0.27, claimed, height=0.26, color="tab:gray", label="tutorial: under")
    ax.barh(y, p99, height=0.26, color="tab:blue", label="measured p99")
    ax.barh(y + 0.27, p50, height=0.26, color="#9ecae1", label="measured p50")
    for i in range(len(labels)):
        for value, dy in ((claimed[i], -0.27), (p99[i], 0), (p50[i], 0.27)):
            ax.text(value, y[i] + dy, f" {value:.3g} ms", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(p50.min(), claimed.min()) / 2, max(claimed.max(), p99.max()) * 6)
    ax.set_xlabel("cached read (ms, log scale)")
    ax.set_title(
        title or "Cached reads: what the tutorials claim, what a hit costs here"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def hit_cost_by_size(
    kb: Sequence[float],
    p50_ms: Sequence[float],
    p99_ms: Sequence[float],
    *,
    claim_ms: float | None = None,
    mark_kb: float | None = None,
    picked: tuple[float, float, float] | None = None,
    title: str = "",
) -> Figure:
    """Hit latency (p50, p99) against the size of the cached value.

    Args:
        kb: Payload sizes in KB (the JSON stored).
        p50_ms, p99_ms: Measured percentiles, one per size.
        claim_ms: A claimed upper bound to draw as a line.
        mark_kb: A size to mark (the tutorial's own payload).
        picked: ``(kb, p50_ms, p99_ms)`` of one more size, measured apart
            (a widget's choice), drawn as stars over the curves.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(kb, p99_ms, marker="o", color="tab:blue", label="p99")
    ax.plot(kb, p50_ms, marker="o", color="#9ecae1", label="p50")
    if claim_ms is not None:
        ax.axhline(claim_ms, color="tab:gray", linestyle="--", label="claimed")
    if mark_kb is not None:
        ax.axvline(mark_kb, color="tab:red", linestyle=":", label="tutorial's payload")
    if picked is not None:
        pkb, p50, p99 = picked
        ax.plot(
            [pkb, pkb],
            [p50, p99],
            "*",
            color="tab:orange",
            markersize=14,
            label=f"your pick: {pkb:,.0f} KB",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cached value (KB of JSON, log scale)")
    ax.set_ylabel("hit latency (ms, log scale)")
    ax.set_title(title or "A hit costs more as the value grows")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def eviction_vs_optimum(
    measured: Mapping[str, float], offline: Mapping[str, float], *, title: str = ""
) -> Figure:
    """Hit ratios of the server's eviction policies beside offline references.

    Args:
        measured: ``{label: hit ratio}`` measured on the server.
        offline: ``{label: hit ratio}`` simulated on the same trace (exact
            LRU, Belady's optimum), drawn hatched.
        title: Figure title.
    """
    labels = list(measured) + list(offline)
    values = list(measured.values()) + list(offline.values())
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * len(labels)))
    bars = ax.barh(labels, values, color="tab:green")
    for bar in bars[len(measured) :]:
        bar.set_color("white")
        bar.set_edgecolor("tab:green")
        bar.set_hatch("//")
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:.1%}", va="center")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("hit ratio (warm half of the same Zipf trace)")
    ax.set_title(title or "Eviction policies against the offline optimum")
    fig.tight_layout()
    return fig


def eviction_at_capacity(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    points: Mapping[str, tuple[float, float]],
    *,
    title: str = "",
) -> Figure:
    """Hit ratio against the number of resident keys: references and server runs.

    Args:
        curves: ``{label: (capacities, hit ratios)}`` of offline references
            (exact LRU, exact LFU, Belady), drawn as lines.
        points: ``{label: (resident keys, hit ratio)}`` of server runs, drawn as
            markers at the number of keys each run held, so that every run sits
            beside the references at its own size.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    styles = {"LRU": "tab:blue", "LFU": "tab:orange", "Belady": "tab:green"}
    for label, (xs, ys) in curves.items():
        color = next((c for k, c in styles.items() if k in label), None)
        ax.plot(xs, ys, linestyle="--", color=color, label=label)
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, (label, (x, y)) in enumerate(points.items()):
        color = next(
            (c for k, c in styles.items() if k.lower() in label.lower()), "black"
        )
        ax.plot(
            [x],
            [y],
            marker=markers[i % len(markers)],
            color=color,
            linestyle="none",
            markersize=9,
            markeredgecolor="black",
            label=label,
        )
    ax.set_xlabel("keys resident in the cache")
    ax.set_ylabel("hit ratio (warm half of the trace)")
    ax.set_title(
        title or "Every policy beside the references at the same number of keys"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def stale_window(
    ms: Sequence[float], stale: Sequence[bool], *, delay_ms: float, title: str = ""
) -> Figure:
    """Local reads after another client's write: stale (old value) or fresh.

    Args:
        ms: Milliseconds after the write's reply, one per read.
        stale: True where the read returned the old value.
        delay_ms: The one-way delay added to the invalidation's path.
        title: Figure title.
    """
    ms_arr, stale_arr = np.asarray(ms), np.asarray(stale, dtype=bool)
    fig, ax = plt.subplots(figsize=(8, 2.4))
    ax.scatter(
        ms_arr[stale_arr],
        np.ones(stale_arr.sum()),
        color="tab:red",
        marker="|",
        s=200,
        label="old value (stale)",
    )
    ax.scatter(
        ms_arr[~stale_arr],
        np.zeros((~stale_arr).sum()),
        color="tab:green",
        marker="|",
        s=200,
        label="new value",
    )
    ax.axvline(delay_ms, color="tab:gray", linestyle="--", label="added delay")
    ax.set_yticks([0, 1], ["fresh", "stale"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("ms after the writer's SET returned")
    ax.set_title(title or "Client-side cache: the stale window after a write")
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
