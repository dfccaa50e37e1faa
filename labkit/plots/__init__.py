"""Plot helpers shared by the notebooks (matplotlib; one figure per call).

Pattern-specific plots live beside this file, one module per pattern
(``labkit.plots.cache``, ``labkit.plots.ratelimit``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["latency_cdf", "latency_hist", "throughput_bars"]


def latency_hist(
    samples: Mapping[str, Sequence[float] | np.ndarray],
    *,
    title: str = "Latency per operation",
    bins: int = 60,
    log: bool = True,
) -> Figure:
    """Overlaid histograms of duration samples (seconds), one per label.

    The x axis is in milliseconds, logarithmic by default because a cache hit
    and a slow origin differ by orders of magnitude. The median of each series
    is marked with a dashed line.
    """
    fig, ax = plt.subplots(figsize=(8, 3.8))
    all_ms = np.concatenate([np.asarray(s) * 1000 for s in samples.values()])
    lo, hi = max(all_ms.min(), 1e-4), all_ms.max()
    edges = list(np.geomspace(lo, hi * 1.01, bins) if log else np.linspace(0, hi, bins))
    for i, (label, s) in enumerate(samples.items()):
        color = f"C{i}"
        ms = np.asarray(s) * 1000
        # Weighted so each series sums to 1: series of different sizes compare.
        weights = np.full(ms.size, 1 / ms.size)
        ax.hist(ms, bins=edges, weights=weights, alpha=0.55, label=label, color=color)
        ax.axvline(np.median(ms), color=color, linestyle="--", linewidth=1)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("milliseconds per operation (dashed: median)")
    ax.set_ylabel("share of operations")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def latency_cdf(
    samples: Mapping[str, Sequence[float] | np.ndarray],
    *,
    title: str = "Latency distribution",
) -> Figure:
    """Empirical CDFs of duration samples (seconds), with p50/p99 guides."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for label, s in samples.items():
        ms = np.sort(np.asarray(s) * 1000)
        ax.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=label)
    for q in (0.5, 0.99):
        ax.axhline(q, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("fraction of operations")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def throughput_bars(
    rates: Mapping[str, float], *, baseline: str | None = None, title: str = ""
) -> Figure:
    """Horizontal bars of operations per second; ratios to ``baseline`` labelled."""
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(rates)))
    labels = list(rates)
    values = [rates[k] for k in labels]
    ax.barh(labels, values, color="tab:blue")
    ax.invert_yaxis()
    base = rates[baseline] if baseline else None
    for i, v in enumerate(values):
        text = f" {v:,.0f}/s" + (f"  ({v / base:.2f}x)" if base else "")
        ax.text(v, i, text, va="center")
    ax.set_xlim(0, max(values) * 1.35)
    ax.set_xlabel("operations per second")
    ax.set_title(title)
    fig.tight_layout()
    return fig
