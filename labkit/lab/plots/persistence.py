"""Plots for notebook 04: what a crash loses, what durability costs, restarts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["crash_outcome", "crash_summary", "restart_curve"]


def crash_summary(
    results: Mapping[str, Any], rates: Mapping[str, float], *, baseline: str = "none"
) -> Figure:
    """Lost acknowledged writes (left) and write throughput (right) per policy.

    Args:
        results: ``{policy: CrashResult}`` (measured by ``crash_test``).
        rates: ``{policy: SETs per second}`` (from ``write_throughput``).
        baseline: The policy the throughput ratios are relative to.
    """
    policies = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.9 + 0.5 * len(policies)))
    lost = [results[p].lost for p in policies]
    acked = [results[p].acked for p in policies]
    colors = ["tab:red" if n else "tab:green" for n in lost]
    left.barh(policies, lost, color=colors)
    for i, (n, a) in enumerate(zip(lost, acked, strict=True)):
        left.text(n, i, f" {n} of {a}", va="center")
    left.set_xlim(0, max(max(acked), 1) * 1.3)
    left.invert_yaxis()
    left.set_xlabel("acknowledged writes lost to one SIGKILL")
    left.set_title("What a process crash loses")
    base = rates.get(baseline)
    values = [rates.get(p, 0.0) for p in policies]
    right.barh(policies, values, color="tab:blue")
    for i, v in enumerate(values):
        label = f" {v:,.0f}/s" + (f" ({v / base:.2f}x)" if base else "")
        right.text(v, i, label, va="center")
    right.set_xlim(0, max(values) * 1.45)
    right.invert_yaxis()
    right.set_yticklabels([])
    right.set_xlabel(f"SETs per second, one client (ratio to {baseline!r})")
    right.set_title("What durability costs")
    fig.tight_layout()
    return fig


def crash_outcome(result: Any) -> Figure:
    """One crash test as a bar over the write stream: survived, lost, in flight."""
    fig, ax = plt.subplots(figsize=(9, 2.2))
    kept = result.acked - result.lost
    parts = [
        (kept, "tab:green", f"acknowledged, recovered ({kept})"),
        (result.lost, "tab:red", f"acknowledged, LOST ({result.lost})"),
        (result.in_flight, "tab:grey", f"in flight at the kill ({result.in_flight})"),
    ]
    left = 0
    for width, color, label in parts:
        ax.barh([0], [width], left=left, color=color, label=label)
        left += width
    ax.axvline(result.acked, color="black", linestyle="--", linewidth=1)
    ax.set_yticks([])
    ax.set_xlim(0, max(left, 1) * 1.02)
    ax.set_xlabel("writes, in the order they were sent (dashed: SIGKILL)")
    ax.set_title(
        f"{result.policy}: {result.acked} acknowledged, {result.recovered} back "
        "after restart",
        pad=26,
    )
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def restart_curve(results: Sequence[Any], *, title: str = "") -> Figure:
    """Loading time at restart (as the server logs it) vs dataset size.

    Args:
        results: ``RestartResult``s; one line per ``label`` (e.g.
            "aof-everysec (rewritten)").
        title: Figure title.
    """
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        label = getattr(r, "label", None) or r.policy
        lines.setdefault(label, []).append((r.keys, r.load_s * 1000))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for label, pts in lines.items():
        pts.sort()
        ax.plot([k for k, _ in pts], [ms for _, ms in pts], "o-", label=label)
    ax.set_xlabel("keys in the dataset")
    ax.set_ylabel("loading time, ms (server log)")
    ax.set_title(title or "Time to load the data at restart vs dataset size")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig
