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


def plot_plateau(steps: list[dict], path: Path) -> None:
    """Goodput and admitted page p99 against offered users: the app (ramp, then 2x/4x) and the twin."""
    fig, goodput = plt.subplots(figsize=(8, 4.5))
    latency = goodput.twinx()
    for phases, label, style in ((("ramp", "overload"), "app", "-"), (("twin",), "no-I/O twin", "--")):
        run = sorted((s for s in steps if s.get("phase") in phases), key=lambda s: s["users"])
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
    goodput.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plateau_section(steps: list[dict], heads: dict) -> list[str]:
    share = heads["goodput_share"]

    def users(value, steps_of):
        if value:
            return f"{value} users"
        first = min((s["users"] for s in steps if s.get("phase") == steps_of), default="?")
        return f"below {first} users (no step met the criteria)"

    knee_line = f"**Knee: {users(heads['knee'], 'ramp')} (twin: {users(heads['twin_knee'], 'twin')}"
    knee_line += f", ratio {heads['ratio']})**" if heads["ratio"] else ")**"
    if not heads["knee"]:
        knee_line += f"; the 2× and 4× steps are relative to the first step, {heads['knee_used']} users"
    lines = [
        "## Headlines",
        "",
        f"- {knee_line}",
        f"- **Goodput at 2× / 4× the knee: {share.get(2, 0):.0%} / {share.get(4, 0):.0%} of peak** "
        f"(peak {heads['peak_goodput']} quizzes/min at {heads['peak_users']} users; "
        f"{heads['goodput_share_of_knee'].get(2, 0):.0%} / {heads['goodput_share_of_knee'].get(4, 0):.0%} "
        "of the knee step's own goodput)",
        f"- Waiting-room answer p99 (worst step): {heads['waiting_p99_ms']} ms; 5xx other than the "
        f"waiting room's 503: {heads['max_5xx']}; started quizzes refused: {heads['started_refused']}",
        "",
        "A step counts as a knee step only with 0 errors, admitted page p99 (nginx `$request_time`) "
        "under 300 ms, the generator delivering at least 90% of the request rate its users offer, and "
        "nobody sent to the waiting room. Offered = the requests the locust schedule would send in the "
        "measured window if every answer took no time (`bench/plateau.py` simulates it). The knee "
        "search uses a capacity too large to engage the waiting room (the per-worker in-flight bound "
        "still applies); the 2× and "
        "4× steps set the capacity live to the measured knee, as an operator would. The twin "
        "(`bench/twin_app.py`) serves the same pages with the same templates and sizes, stateless, "
        "with no Redis, Postgres, limits or admission, on the same nginx configuration, "
        "instances and locust scenario, in the same run.",
        "",
        "**This machine has 2 cores shared with other work (other test suites ran during this "
        "run), and locust runs on it too: absolute numbers are noisy; compare ratios within the run.**",
        "",
        "![goodput and p99 vs offered users](benchmarks-plateau.png)",
        "",
        "## Steps",
        "",
        _row(
            [
                "phase",
                "users",
                "s",
                "offered req/s",
                "delivered req/s",
                "locust CPU %",
                "quizzes/min",
                "page p50/p95/p99 ms",
                "client p99 ms",
                "waiting-room answers (p99 ms, share); full-worker answers",
                "wait p50/p95 s",
                "5xx (not waiting room)",
                "429",
                "started / refused",
                "knee step?",
            ]
        ),
        _row(["---"] * 15),
    ]
    for s in steps:
        wr, wait = s["waiting_room"], s["wait_s"]
        phase = s.get("phase", "")
        if phase == "overload":
            phase = f"{s['factor']}× knee (capacity {s['capacity']})"
        lines.append(
            _row(
                [
                    phase,
                    s["users"],
                    s["seconds"],
                    f"{s['offered_rps']:.0f}",
                    f"{s['delivered_rps']:.0f}",
                    s["locust_cpu_pct"],
                    f"{s['quizzes_per_min']:.0f}",
                    f"{s['page']['p50_ms']}/{s['page']['p95_ms']}/{s['page']['p99_ms']}",
                    s["client_p99_ms"],
                    f"{wr['answers']} ({wr['p99_ms']}, {wr['share_of_requests']:.1%}); "
                    f"{wr.get('busy_answers', 0)}",
                    f"{wait['p50']}/{wait['p95']} ({wait['visitors']} admitted after waiting)",
                    s["status_5xx"],
                    s["status_429"],
                    f"{s['quizzes_started']} / {s['started_refused']}",
                    "yes" if not s.get("knee_failures") else "no: " + "; ".join(s["knee_failures"]),
                ]
            )
        )
    return lines + [""]


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
    ]
    if any(s.get("phase") for s in steps):
        from plateau import headlines

        lines += plateau_section(steps, headlines(steps))
        steps = [s for s in steps if not s.get("twin")]
    lines += [
        "## Load steps" + (" (the app's steps, as before)" if result.get("plateau") else ""),
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
