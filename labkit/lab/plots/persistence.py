"""Plots for notebooks 05 and 06: crashes, power cuts, formats, forks, failovers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = [
    "crash_outcome",
    "crash_summary",
    "fork_costs",
    "format_sizes",
    "loss_table",
    "restart_curve",
    "timeline",
]


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


def loss_table(results: Mapping[str, Any], *, title: str = "") -> Figure:
    """Acknowledged writes lost to a SIGKILL and to a power cut, per policy.

    Args:
        results: ``{label: PowerLossResult}`` (measured by ``power_loss_test``).
        title: Figure title.
    """
    labels = list(results)
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.55 * len(labels)))
    y = range(len(labels))
    kill = [results[k].kill.lost for k in labels]
    power = [results[k].power.lost for k in labels]
    acked = [results[k].acked for k in labels]
    ax.barh(
        [i - 0.2 for i in y], kill, height=0.38, color="tab:orange", label="SIGKILL"
    )
    ax.barh(
        [i + 0.2 for i in y], power, height=0.38, color="tab:red", label="power cut"
    )
    for i, (k, p, a) in enumerate(zip(kill, power, acked, strict=True)):
        ax.text(k, i - 0.2, f" {k} of {a}", va="center", fontsize=8)
        ax.text(p, i + 0.2, f" {p} of {a}", va="center", fontsize=8)
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max([*acked, 1]) * 1.3)
    ax.set_xlabel("acknowledged writes lost")
    ax.set_title(title or "What each crash loses, measured from the same moment")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def format_sizes(results: Sequence[Any]) -> Figure:
    """RDB and AOF size (left) and loading time (right) per overwrite factor.

    Args:
        results: ``FormatResult``s (from ``formats_test``), one per factor.
    """
    ks = [str(r.overwrites) for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    x = range(len(ks))
    panels: list[tuple[Any, list[float], list[float], float]] = [
        (left, [r.rdb_bytes for r in results], [r.aof_bytes for r in results], 1e6),
        (right, [r.rdb_load_s for r in results], [r.aof_load_s for r in results], 1e-3),
    ]
    for ax, rdb, aof, scale in panels:
        ax.bar([i - 0.2 for i in x], [v / scale for v in rdb], 0.38, label="RDB")
        ax.bar([i + 0.2 for i in x], [v / scale for v in aof], 0.38, label="AOF")
        ax.set_xticks(list(x), ks)
        ax.set_xlabel("writes per key (overwrite factor k)")
        ax.legend()
    left.set_ylabel("file size, MB")
    left.set_title("On disk")
    right.set_ylabel("loading at restart, ms (server log)")
    right.set_title("At restart")
    fig.tight_layout()
    return fig


def fork_costs(costs: Sequence[Any]) -> Figure:
    """Fork time (left) and copy-on-write memory (right) against dataset memory.

    Args:
        costs: ``ForkCost``s (from ``fork_cost``); those with writes during
            the save and those without are drawn as two lines.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for busy, style, label in (
        (True, "o-", "writes during the save"),
        (False, "s--", "no writes"),
    ):
        pts = sorted(
            (c.used_memory / 1e6, c.fork_usec / 1000, c.cow_bytes / 1e6)
            for c in costs
            if (c.writes_during > 0) == busy
        )
        if not pts:
            continue
        left.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        right.plot([p[0] for p in pts], [p[2] for p in pts], style, label=label)
    left.set_ylabel("fork() time, ms (latest_fork_usec)")
    right.set_ylabel("copy-on-write, MB")
    for ax in (left, right):
        ax.set_xlabel("dataset memory, MB (used_memory)")
        ax.set_ylim(bottom=0)
        ax.legend()
    left.set_title("The server is blocked this long")
    right.set_title("Extra memory while the child runs")
    fig.tight_layout()
    return fig


_OUTCOME_STYLE = {
    "ok": ("tab:green", "o", "acknowledged"),
    "refused": ("tab:orange", "s", "refused (error reply)"),
    "timeout": ("tab:red", "x", "no answer (timeout)"),
    "down": ("tab:red", "x", "connection refused or reset"),
}


def timeline(
    attempts: Sequence[Any],
    events: Sequence[Any],
    *,
    t0: float,
    cut: float | None = None,
    healed: float | None = None,
    lost: set[int] | None = None,
    title: str = "",
    channels: Sequence[str] = (
        "+sdown",
        "+odown",
        "+switch-master",
        "+convert-to-slave",
    ),
) -> Figure:
    """A failover seen from both sides: the client's writes and Sentinel's events.

    Args:
        attempts: ``WriteAttempt``s (``seq``, ``at``, ``outcome``, ...).
        events: ``SentinelEvent``s (``at``, ``channel``, ``text``).
        t0: The moment drawn as time 0 (``time.monotonic()``: the kill or the cut).
        cut, healed: A partition's start and end, shaded.
        lost: Sequence numbers of acknowledged writes later lost (drawn black).
        title: Figure title.
        channels: Sentinel events drawn as labelled lines (others as ticks).
    """
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 4.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    lost = lost or set()
    rows = {"ok": 2, "refused": 1, "timeout": 0, "down": 0}
    seen: set[str] = set()
    for outcome, (color, marker, label) in _OUTCOME_STYLE.items():
        xs = [a.at - t0 for a in attempts if a.outcome == outcome and a.seq not in lost]
        if xs:
            text = label if label not in seen else None
            seen.add(label)
            top.scatter(
                xs,
                [rows[outcome]] * len(xs),
                s=9,
                color=color,
                marker=marker,
                label=text,
            )
    gone = [a.at - t0 for a in attempts if a.seq in lost]
    if gone:
        top.scatter(gone, [rows["ok"]] * len(gone), s=9, color="black", marker="o",
                    label="acknowledged, later LOST")  # fmt: skip
    labels = ["no answer or\nno connection", "refused", "acknowledged"]
    top.set_yticks([0, 1, 2], labels)
    top.set_ylim(-0.5, 2.5)
    top.set_ylabel("client's writes")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    named = [e for e in events if e.channel in channels]
    for i, e in enumerate(named):
        bottom.axvline(e.at - t0, color="tab:blue", linewidth=1)
        bottom.text(e.at - t0, 0.15 + 0.25 * (i % 3), f" {e.channel}", fontsize=8)
    others = [e.at - t0 for e in events if e.channel not in channels]
    if others:
        bottom.scatter(
            others,
            [0.05] * len(others),
            marker="|",
            color="grey",
            s=40,
            label="other Sentinel events\n(+sdown of a replica, +slave, ...)",
        )
        bottom.legend(
            loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False
        )
    bottom.set_yticks([])
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("Sentinel")
    for ax in (top, bottom):
        if cut is not None:
            end = (healed if healed is not None else cut) - t0
            ax.axvspan(cut - t0, end, color="tab:red", alpha=0.08)
    bottom.set_xlabel(
        "seconds since the cut (shaded: the partition)"
        if cut is not None
        else "seconds since time 0"
    )
    top.set_title(title or "The client's writes and Sentinel's events")
    fig.tight_layout()
    return fig
