"""The benchmark's figures: page latency vs users, and goodput with p99 vs offered users (PNG, matplotlib)."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_latency(steps: list[dict], path: Path) -> None:
    users = [s["users"] for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
        ax.plot(users, [s["page"][key] for s in steps], marker="o", label=f"page {label}")
    ax.axhline(300, color="grey", linestyle="--", linewidth=1, label="300 ms target")
    ax.set_xlabel("concurrent simulated quiz-takers (3-7 s think time)")
    ax.set_ylabel("server-side page latency (ms, nginx $request_time)")
    ax.set_title("quizapp: page latency vs users")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_plateau(steps: list[dict], path: Path) -> None:
    """Goodput and admitted page p99 against offered users: the app (ramp, then 2x/4x) and the twin."""
    fig, goodput = plt.subplots(figsize=(8, 5.5))
    latency = goodput.twinx()
    series = (
        (("ramp",), "app, knee search", "-"),
        (("reference", "overload"), "app, goodput steps (longer window)", "-."),
        (("twin",), "no-I/O twin", "--"),
    )
    if not any(s.get("phase") == "reference" for s in steps):  # one window length for every step
        series = ((("ramp", "overload"), "app", "-"), series[2])
    for phases, label, style in series:
        run = _median_per_users([s for s in steps if s.get("phase") in phases])
        if not run:
            continue
        users = [s["users"] for s in run]
        goodput.plot(
            users,
            [s["quizzes_per_min"] for s in run],
            style,
            marker="o",
            color="tab:blue",
            label=f"{label} goodput",
        )
        latency.plot(
            users,
            [s["page"]["p99_ms"] for s in run],
            style,
            marker="s",
            color="tab:red",
            label=f"{label} page p99",
        )
    repeated = [s for s in steps if s.get("phase") == "overload" and s.get("repeat")]
    if repeated:  # each repeated overload step, around the median the line goes through
        goodput.scatter(
            [s["users"] for s in repeated],
            [s["quizzes_per_min"] for s in repeated],
            color="tab:blue",
            marker="x",
            s=20,
            label="app goodput, each overload step",
        )
    latency.axhline(300, color="grey", linestyle=":", linewidth=1)
    goodput.set_ylim(bottom=0)
    latency.set_ylim(bottom=0)
    goodput.set_xlabel("offered users (3-7 s think time)")
    goodput.set_ylabel("goodput (quizzes completed per minute)", color="tab:blue")
    latency.set_ylabel("admitted page p99 (ms, nginx $request_time)", color="tab:red")
    goodput.set_title("quizapp: goodput and p99 vs offered users")
    goodput.grid(True, alpha=0.3)
    lines = goodput.get_legend_handles_labels()
    more = latency.get_legend_handles_labels()
    # Below the axes: inside, it covered the twin's line.
    goodput.legend(
        lines[0] + more[0],
        lines[1] + more[1],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=2,
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _median_per_users(steps: list[dict]) -> list[dict]:
    """One point per user count, in order: a repeated step's median goodput and median p99."""
    by_users: dict[int, list[dict]] = {}
    for s in steps:
        by_users.setdefault(s["users"], []).append(s)
    points = []
    for users in sorted(by_users):
        group = by_users[users]
        goodput = statistics.median(s["quizzes_per_min"] for s in group)
        p99 = statistics.median(s["page"]["p99_ms"] for s in group)
        points.append({"users": users, "quizzes_per_min": goodput, "page": {"p99_ms": p99}})
    return points
