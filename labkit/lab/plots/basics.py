"""Plots for notebook 00: what a round trip costs and what pipelining saves."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["pipeline_curve"]


def pipeline_curve(per_command_s: Mapping[int, float], *, title: str = "") -> Figure:
    """Cost per command (µs) and speed-up vs batch size, from measured medians.

    Args:
        per_command_s: ``{batch_size: median seconds per command}``; batch size 1
            is the baseline (one command per round trip) and must be present.
        title: Figure title.
    """
    if 1 not in per_command_s:
        raise ValueError("per_command_s needs batch size 1 as the baseline")
    sizes = sorted(per_command_s)
    micros = [per_command_s[b] * 1e6 for b in sizes]
    speedup = [per_command_s[1] / per_command_s[b] for b in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.loglog(sizes, micros, "o-")
    left.set_xlabel("commands per round trip (pipeline size)")
    left.set_ylabel("µs per command (median)")
    left.set_title("Cost per command")
    right.semilogx(sizes, speedup, "o-", color="tab:green")
    right.axhline(1, color="grey", linewidth=0.8, linestyle=":")
    for b, s in zip(sizes, speedup, strict=True):
        if b in (10, 100, 1000):
            right.annotate(
                f"{s:.1f}x",
                (b, s),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
            )
    right.set_ylim(0, max(speedup) * 1.15)
    right.set_xlabel("commands per round trip (pipeline size)")
    right.set_ylabel("speed-up vs one command per round trip")
    right.set_title("Speed-up, measured here")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
