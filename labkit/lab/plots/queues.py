"""Plots for notebook 08: scaling, completion, retries, return times, latency."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = [
    "completion_curve",
    "latency_vs_load",
    "retry_timeline",
    "return_times",
    "waits_by_load",
    "workers_scaling",
]


def workers_scaling(
    rates: Mapping[int, float], *, job_seconds: float | None = None, title: str = ""
) -> Figure:
    """Jobs per second against the number of workers, beside perfect scaling.

    Args:
        rates: ``{workers: jobs per second}``, measured; must include 1.
        job_seconds: The handler's own duration; if given, the ceiling
            ``workers / job_seconds`` is drawn too.
        title: Figure title.
    """
    if 1 not in rates:
        raise ValueError("rates needs the 1-worker rate as the baseline")
    ns = sorted(rates)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(ns, [rates[n] for n in ns], "o-", label="measured")
    ax.plot(ns, [rates[1] * n for n in ns], ":", color="grey", label="1 worker x n")
    if job_seconds:
        ax.plot(
            ns,
            [n / job_seconds for n in ns],
            "--",
            color="tab:red",
            alpha=0.6,
            label="ceiling: n / job duration",
        )
    for n in ns:
        ax.annotate(
            f"{rates[n] / rates[1]:.1f}x",
            (n, rates[n]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
        )
    ax.set_xticks(ns)
    ax.set_xlabel("workers")
    ax.set_ylabel("jobs per second")
    ax.set_ylim(0, max(max(rates.values()), rates[1] * ns[-1]) * 1.2)
    ax.set_title(title or "Throughput against workers (labels: speed-up vs 1)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def completion_curve(
    runs: Mapping[str, tuple[Sequence[float], Sequence[int]]],
    *,
    total: int | None = None,
    marks: Mapping[str, float] | None = None,
    title: str = "Jobs completed over time",
) -> Figure:
    """Completed jobs against seconds, one line per run, events as vertical lines.

    Args:
        runs: ``{label: (seconds, completed)}`` sampled during each run.
        total: Jobs enqueued; drawn as a horizontal line.
        marks: ``{label: seconds}`` events such as "worker killed".
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for label, (t, done) in runs.items():
        ax.step(t, done, where="post", label=label)
    if total is not None:
        ax.axhline(total, color="grey", linewidth=0.8, linestyle=":")
    for i, (label, at) in enumerate((marks or {}).items()):
        ax.axvline(at, color=f"C{i + 3}", linestyle="--", linewidth=1, label=label)
    ax.set_xlabel("seconds since the jobs were enqueued")
    ax.set_ylabel("jobs completed")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def retry_timeline(
    attempts: Mapping[str, Sequence[tuple[float, str]]],
    *,
    title: str = "Attempts per job (x: seconds since enqueue)",
) -> Figure:
    """One row per job, one marker per attempt: failed, succeeded, dead-lettered.

    Args:
        attempts: ``{job label: [(seconds, outcome), ...]}`` where outcome is
            ``"failed"``, ``"done"`` or ``"dead"``; gaps between markers are
            labelled in milliseconds.
        title: Figure title.
    """
    style = {
        "failed": ("x", "tab:orange"),
        "done": ("o", "tab:green"),
        "dead": ("X", "black"),
    }
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.6 * len(attempts)))
    seen: set[str] = set()
    for row, points in enumerate(attempts.values()):
        xs = [t for t, _ in points]
        ax.plot(xs, [row] * len(xs), color="lightgrey", zorder=1)
        for t, outcome in points:
            marker, color = style[outcome]
            ax.scatter(
                t,
                row,
                marker=marker,
                color=color,
                s=70,
                zorder=2,
                label=None if outcome in seen else outcome,
            )
            seen.add(outcome)
        for a, b in itertools.pairwise(xs):
            ax.annotate(
                f"{(b - a) * 1000:.0f} ms",
                ((a + b) / 2, row),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=8,
            )
    ax.set_yticks(range(len(attempts)), list(attempts))
    ax.set_ylim(-0.6, len(attempts) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since enqueue")
    ax.set_title(title)
    ax.margins(x=0.06)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def return_times(
    seconds: Sequence[float],
    *,
    visibility: float,
    claim_every: float,
    title: str = "When the dead worker's jobs started again",
) -> Figure:
    """Histogram of seconds from a kill to each held job's next start.

    Args:
        seconds: One value per job the dead worker held.
        visibility: The visibility timeout (drawn as a line).
        claim_every: How often a live worker looks for idle entries; the
            latest a job can come back is ``visibility + claim_every``.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(7, 3.2))
    top = max([*seconds, visibility + claim_every]) * 1.1
    ax.hist(seconds, bins=20, range=(0, top), color="tab:blue", alpha=0.8)
    ax.axvline(visibility, color="tab:red", linestyle="--", label="visibility timeout")
    ax.axvline(
        visibility + claim_every,
        color="tab:orange",
        linestyle=":",
        label="+ one claim interval",
    )
    ax.set_xlabel("seconds after the kill")
    ax.set_ylabel("jobs")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def latency_vs_load(
    points: Mapping[int, Sequence[tuple[float, float, float]]],
    *,
    title: str = "Enqueue-to-start wait against load",
) -> Figure:
    """p50 and p99 wait against utilisation, one colour per worker count.

    Args:
        points: ``{workers: [(utilisation, p50 seconds, p99 seconds), ...]}``.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (workers, rows) in enumerate(sorted(points.items())):
        rows = sorted(rows)
        xs = [u for u, _, _ in rows]
        color = f"C{i}"
        ax.plot(
            xs,
            [p50 * 1000 for _, p50, _ in rows],
            "o-",
            color=color,
            label=f"{workers} worker(s): p50",
        )
        ax.plot(
            xs,
            [p99 * 1000 for _, _, p99 in rows],
            "s--",
            color=color,
            label=f"{workers} worker(s): p99",
        )
    ax.set_yscale("log")
    ax.set_xlabel("utilisation (arrival rate x job duration / workers)")
    ax.set_ylabel("wait from enqueue to start (ms)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def waits_by_load(
    points: Mapping[float, Sequence[tuple[float, float]]],
    *,
    title: str = "Enqueue-to-start wait against load, every repeat",
) -> Figure:
    """Mean and p90 wait of each repeat against utilisation, medians joined.

    Args:
        points: ``{utilisation: [(mean seconds, p90 seconds), one per repeat]}``.
        title: Figure title.
    """
    fig, ax = plt.subplots(figsize=(7, 3.6))
    loads = sorted(points)
    for k, (label, marker) in enumerate((("mean", "o"), ("p90", "s"))):
        for u in loads:
            ys = [row[k] * 1000 for row in points[u]]
            ax.plot([u] * len(ys), ys, marker, color=f"C{k}", alpha=0.5)
        medians = [
            sorted(row[k] for row in points[u])[len(points[u]) // 2] for u in loads
        ]
        ax.plot(loads, [m * 1000 for m in medians], "-", color=f"C{k}", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("utilisation (arrival rate x job duration)")
    ax.set_ylabel("wait from enqueue to start (ms)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
