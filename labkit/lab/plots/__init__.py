"""Lab: plots that take measured data and draw it (matplotlib; one figure per call).

Topic plots live beside this file, one module per notebook topic
(``labkit.lab.plots.cache``, ``labkit.lab.plots.ratelimit``, ...); none of them
runs an experiment: the lab's experiment modules compute, these draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["latency_hist"]


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
