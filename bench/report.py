"""Turns measured bench figures into docs/benchmarks.md and a latency-vs-users plot."""

from __future__ import annotations

import datetime as dt
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


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(result: dict) -> str:
    steps = result["steps"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make bench`"
        f"{' (BENCH_QUICK=1)' if result['quick'] else ''} on this machine "
        f"({result['machine']}). Topology: nginx (least_conn) → {result['instances']} gunicorn "
        f"instances × {result['workers']} gevent worker(s) → Postgres 15 + Redis, fake OpenAI with "
        f"{result['fake_latency']} s latency and its own {result['fake_rpm']}/min limit. Locust runs on the "
        "same 2 cores; every simulated user binds its own source address in 127.1.0.0/16, so per-IP "
        "limits see distinct clients. Page latency is nginx's `$request_time` for quiz-taker pages "
        "(server side); `client p99` is what locust saw, including its own queueing. 4xx and 5xx count "
        "quiz-takers' and admins' answers; the abuser (one address hammering `/`) is counted apart.",
        "",
        "## Load steps",
        "",
        _row(
            [
                "users",
                "seconds",
                "req/s",
                "quizzes/min",
                "page p50 ms",
                "p95 ms",
                "p99 ms",
                "client p99 ms",
                "4xx (429)",
                "5xx",
                "abuser 429/sent",
                "RSS/worker MB",
                "pool waits",
                "locust CPU %",
            ]
        ),
        _row(["---"] * 14),
    ]
    for s in steps:
        lines.append(
            _row(
                [
                    s["users"],
                    s["seconds"],
                    f"{s['rps']:.0f}",
                    f"{s['quizzes_per_min']:.0f}",
                    s["page"]["p50_ms"],
                    s["page"]["p95_ms"],
                    s["page"]["p99_ms"],
                    s["client_p99_ms"],
                    f"{s['status_4xx']} ({s['status_429']})",
                    s["status_5xx"],
                    f"{s.get('abuser_429', 0)}/{s.get('abuser_requests', 0)}",
                    s["rss_mb_per_worker"],
                    s["pool_waits"],
                    s["locust_cpu_pct"],
                ]
            )
        )
    best = result.get("max_good_users")
    lines += [
        "",
        f"**Largest user count with 0 5xx and page p99 < 300 ms: {best if best else 'none of the steps'}.**",
        "",
        "![page latency vs users](benchmarks-latency.png)",
        "",
    ]
    if result.get("saturation_note"):
        lines += [result["saturation_note"], ""]
    eff = result.get("efficiency")
    if eff:
        lines += [
            "## Efficiency ratio (same run, same gunicorn settings, wrk on loopback)",
            "",
            _row(["target", "req/s"]),
            _row(["---", "---"]),
            _row(["bare Flask hello", f"{eff['bare_hello']:.0f}"]),
            _row(["app no-op (`/healthz`)", f"{eff['noop_healthz']:.0f}"]),
            _row(["question page (session + limiter + CSRF + template)", f"{eff['question_page']:.0f}"]),
            "",
            f"Question page = **{eff['question_vs_hello']:.0%} of bare hello**, "
            f"{eff['question_vs_noop']:.0%} of the app's no-op endpoint "
            f"({eff['settings']['workers']} worker, {eff['settings']['connections']} connections, "
            f"{eff['settings']['seconds']} s each, median of {eff['settings'].get('rounds', 1)} "
            "interleaved rounds).",
            "",
        ]
    profile = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-profile.md"
    if profile.exists():  # the hot-path profile, measured by bench/profile.py and kept by hand
        lines += [profile.read_text().strip(), ""]
    ai = result.get("ai")
    if ai:
        lines += [
            "## AI budget under load (from the fake OpenAI server's call log)",
            "",
            _row(
                [
                    "budget",
                    "max calls in any window",
                    "windows over budget",
                    "utilisation while backlogged",
                    "max in flight",
                    "upstream calls",
                    "dedup hits",
                    "cache hits",
                    "fallbacks",
                    "p95 time to analysis s",
                ]
            ),
            _row(["---"] * 10),
            _row(
                [
                    f"{ai['budget']}/{ai['window_s']:.0f}s",
                    ai["max_in_window"],
                    ai["windows_over_budget"],
                    ai["utilisation"],
                    ai["max_in_flight"],
                    ai["calls"],
                    ai.get("dedup_hits", "n/a"),
                    ai.get("cache_hits", "n/a"),
                    ai.get("fallbacks", "n/a"),
                    ai.get("p95_time_to_analysis_s", "n/a"),
                ]
            ),
            "",
        ]
    integ = result.get("integrity")
    if integ:
        names = list(dict.fromkeys(name for item in integ for name in item["checks"]))
        lines += [
            "## Integrity after each step",
            "",
            _row(["users", *names]),
            _row(["---"] * (1 + len(names))),
        ]
        for item in integ:
            lines.append(_row([item["users"], *(_fmt_check(item["checks"].get(n, "n/a")) for n in names)]))
        lines.append("")
    mem = result.get("session_memory")
    if mem:
        lines += [
            "## Session memory",
            "",
            f"{mem['sessions']:,} real-shaped sessions (one real quiz walk's session, "
            f"{mem['payload_bytes']} B "
            f"msgpack payload) in a private Redis: **{mem['bytes_per_session']} B per session** "
            f"(`MEMORY USAGE` of one key: {mem['memory_usage_one_key']} B; target ≤ 400 B).",
            "",
        ]
    chaos = result.get("chaos")
    if chaos:
        lines += chaos_table(chaos)
    return "\n".join(lines) + "\n"


def chaos_table(chaos: list[dict]) -> list[str]:
    lines = [
        "## Chaos (`make chaos`)",
        "",
        _row(["event", "requests during", "failed", "5xx", "recovery s", "lost writes", "note"]),
        _row(["---"] * 7),
    ]
    for c in chaos:
        lines.append(
            _row(
                [
                    c["event"],
                    c["requests"],
                    c["failed"],
                    c["status_5xx"],
                    c["recovery_s"],
                    c["lost_writes"],
                    c.get("note", ""),
                ]
            )
        )
    return lines + [""]


def _fmt_check(value) -> str:
    if isinstance(value, bool):
        return "ok" if value else "**FAIL**"
    return str(value)
