"""Turns measured bench figures into docs/benchmarks.md (the plots are bench/plots.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from plateau import held_slots


def plateau_section(steps: list[dict], heads: dict) -> list[str]:
    share = heads["goodput_share"]

    def users(value, steps_of, open_ended=False):
        if value and open_ended:  # no step failed: the step list ended before the knee
            return f"at least {value} users, every step run met the criteria"
        if value:
            return f"{value} users"
        first = min((s["users"] for s in steps if s.get("phase") == steps_of), default="?")
        return f"below {first} users (no step met the criteria)"

    knee_line = (
        f"**Knee: {users(heads['knee'], 'ramp', heads.get('knee_open'))} "
        f"(twin: {users(heads['twin_knee'], 'twin', heads.get('twin_knee_open'))}"
    )
    # A twin knee that is only a lower bound makes the ratio an upper bound (and the reverse; both
    # open: no bound either way).
    bound = {(False, True): "at most ", (True, False): "at least "}.get(
        (bool(heads.get("knee_open")), bool(heads.get("twin_knee_open"))), ""
    )
    knee_line += f", ratio {bound}{heads['ratio']})**" if heads["ratio"] else ")**"
    if not heads["knee"]:
        knee_line += f"; the 2× and 4× steps are relative to the first step, {heads['knee_used']} users"
    lines = [
        "## Headlines",
        "",
        f"- {knee_line}",
        # One decimal: 89.8 % must not read as the 90 % target.
        f"- **Goodput at 2× / 4× the knee: {share.get(2, 0):.1%} / {share.get(4, 0):.1%} of peak** "
        f"({_spread(heads)}peak {heads['peak_goodput']} quizzes/min at {heads['peak_users']} users, "
        f"{_peak_of(heads)}; "
        f"{heads['goodput_share_of_knee'].get(2, 0):.1%} / {heads['goodput_share_of_knee'].get(4, 0):.1%} "
        "of the knee step's own goodput)",
        *_paired_line(heads),
        f"- Waiting-room answer p99 (worst step): {heads['waiting_p99_ms']} ms; 5xx other than the "
        f"waiting room's 503: {heads['max_5xx']}; started quizzes refused: {heads['started_refused']}",
        "",
        "A step counts as a knee step only with 0 errors, admitted page p99 (nginx `$request_time`) "
        "under 300 ms, the generator delivering at least 90% of the request rate its users offer, and "
        "nobody sent to the waiting room. Offered = the requests the locust schedule would send in the "
        "measured window if every answer took no time (`bench/plateau.py` simulates it). The knee "
        "search uses a capacity too large to engage the waiting room (the per-worker in-flight bound "
        "still applies); the 2× and 4× steps (2 and 4 × the knee's users) set the capacity live, and "
        "the admission pace follows it (2 × capacity ÷ visit seconds, derived in Redis from the live "
        f"capacity). The capacity: {_capacity_of(heads)}. The twin "
        "(`bench/twin_app.py`) serves the same pages with the same templates and sizes, and the "
        "app's response headers and cookies (set where the app sets them, never read back), stateless, "
        "with no Redis, Postgres, limits or admission, on the same nginx configuration, "
        "instances and locust scenario, in the same run.",
        "",
        "**This machine has 2 cores, and locust runs on them too (other work may share them: "
        "see the notes on the run): absolute numbers are noisy; compare ratios within the run.**",
        "",
        "![goodput and p99 vs offered users](benchmarks-plateau.png)",
        "",
    ]
    return lines + _plateau_steps(steps)


def _peak_of(heads: dict) -> str:
    """Which steps the peak is the best of."""
    if heads.get("goodput_window_s"):
        return (
            f"the best of every app step with the overload steps' {heads['goodput_window_s']} s window: "
            "the knee and the first step past it run again at that length"
        )
    return "the best of every app step"


def _capacity_of(heads: dict) -> str:
    """The overload steps' capacity and where it came from (plateau.overload_capacity)."""
    capacity, knee, held_at = heads.get("capacity"), heads.get("knee_used"), heads.get("capacity_held_at")
    if capacity is None or (capacity == knee and not held_at):
        return f"the knee's {knee} users"
    settings = "(`BENCH_OVERLOAD_CAPACITY`: `plateau`, `plateau-users`, `knee` or a number)"
    if held_at:
        return (
            f"{capacity} visitors, the slots the cluster held (median over the window) in the "
            f"{held_at}-user step, where the knee region (the knee and the first step past it, over "
            "the overload window) completed the most quizzes within the app's own criteria, 0 errors "
            "and page p99 under 300 ms. A slot is held from a visitor's hand-out to their quiz's "
            "submit, and a simulated user spends part of each cycle outside one (the result, the AI "
            "poll, the pause before the next person), so an operator reads the capacity off the admin "
            "view's active visitors at the cluster's best, not off a user count; the generator's "
            f"delivery is locust's criterion, not the app's {settings}"
        )
    return (
        f"{capacity} users, where the knee region (the knee and the first step past it, over the "
        "overload window) completed the most quizzes within the app's own criteria, 0 errors and "
        "page p99 under 300 ms; an operator sets it from what the cluster serves, and the "
        f"generator's delivery is locust's criterion, not the app's {settings}"
    )


def _spread(heads: dict) -> str:
    """ "median of 3 steps each, 88-93% / 86-96%; " when the overload steps were repeated."""
    repeats = heads.get("overload_repeats") or {}
    if max(repeats.values(), default=1) < 2:
        return ""
    ranges = heads.get("goodput_share_range") or {}
    spans = " / ".join(f"{ranges[f][0]:.0%}–{ranges[f][1]:.0%}" for f in sorted(ranges))
    counts = sorted(set(repeats.values()))
    count = counts[0] if len(counts) == 1 else "/".join(str(repeats[f]) for f in sorted(repeats))
    return f"median of {count} steps each, lowest–highest {spans}; "


def _plateau_steps(steps: list[dict]) -> list[str]:
    header = [
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
    return ["## Steps", "", *_table(header, (_plateau_row(s) for s in steps)), "", *box_cpu_section(steps)]


def box_cpu_section(steps: list[dict]) -> list[str]:
    """Cores each process group used in each step's measured window (bench/box_cpu.py)."""
    measured = [s for s in steps if s.get("box_cpu")]
    if not measured:
        return []
    groups = sorted({g for s in measured for g in s["box_cpu"]["cores"]})
    header = [
        "phase",
        "users",
        "delivered req/s",
        *groups,
        "interrupts / steal / ended processes",
        "busy / idle cores",
        "app CPU ms per request",
    ]
    rows = []
    for s in measured:
        box = s["box_cpu"]
        cores = box["cores"]
        app_ms = 1000 * cores.get("app", 0) / max(s.get("delivered_rps", 0), 1e-9)
        rows.append(
            [
                s.get("phase", ""),
                s["users"],
                f"{s.get('delivered_rps', 0):.0f}",
                *(f"{cores.get(g, 0):.2f}" for g in groups),
                f"{box.get('interrupt_cores', 0):.2f} / {box.get('steal_cores', 0):.2f} / "
                f"{box.get('unaccounted_cores', 0):.2f}",
                f"{box['busy_cores']:.2f} / {box['idle_cores']:.2f}",
                f"{app_ms:.1f}",
            ]
        )
    return [
        "### Where the box's CPU went (cores, measured window)",
        "",
        "Each process group's CPU time over the step's measured window (`bench/box_cpu.py`, from "
        "`/proc`), in cores; `app` is every gunicorn process (the twin's in twin steps), `other` is "
        "whatever else ran on the box. Interrupts (the loopback network's softirqs) and the "
        'hypervisor\'s steal belong to no process; "ended processes" is busy time no live process '
        "accounts for. App CPU per request divides the app's cores by the delivered request rate.",
        "",
        *_table(header, rows),
        "",
    ]


def _paired_line(heads: dict) -> list[str]:
    """Goodput as a share of the knee step measured in the same minutes (each repeat's own)."""
    paired, spread = heads.get("goodput_share_paired") or {}, heads.get("goodput_share_paired_range") or {}
    if not paired:
        return []
    low, high = spread.get(2, (0, 0)), spread.get(4, (0, 0))
    return [
        f"- Goodput at 2× / 4× the knee, each step against the knee step that opened its repeat (the "
        f"same minutes: the box's drift over the run cancels): **{paired.get(2, 0):.1%} / "
        f"{paired.get(4, 0):.1%}** (medians; lowest–highest {low[0]:.0%}–{low[1]:.0%} / "
        f"{high[0]:.0%}–{high[1]:.0%})"
    ]


def _held(step: dict) -> str:
    """The ", 2,790 visitors held" (median slots in use) of a step that sampled them."""
    held = held_slots(step)
    return f", {held:,} visitors held" if held else ""


def _plateau_row(s: dict) -> list:
    wr, wait = s["waiting_room"], s["wait_s"]
    phase = s.get("phase", "")
    if phase == "overload":
        pace = f", pace {s['pace_per_s']}/s" if s.get("pace_per_s") else ""
        run = f", run {s['repeat']}" if s.get("repeat") else ""
        phase = f"{s['factor']}× knee (capacity {s['capacity']}{pace}{run})"
    elif phase == "reference" and s.get("paired"):
        phase = f"reference (the knee, opening run {s['repeat']} of the overload steps{_held(s)})"
    elif phase == "reference":
        phase = f"reference (the knee region, the overload steps' window{_held(s)})"
    return [
        phase,
        s["users"],
        s["seconds"],
        f"{s['offered_rps']:.0f}",
        f"{s['delivered_rps']:.0f}",
        s["locust_cpu_pct"],
        f"{s['quizzes_per_min']:.0f}",
        f"{s['page']['p50_ms']}/{s['page']['p95_ms']}/{s['page']['p99_ms']}",
        s["client_p99_ms"],
        f"{wr['answers']} ({wr['p99_ms']}, {wr['share_of_requests']:.1%}); {wr.get('busy_answers', 0)}",
        f"{wait['p50']}/{wait['p95']} ({wait['visitors']} admitted after waiting)",
        s["status_5xx"],
        s["status_429"],
        f"{s['quizzes_started']} / {s['started_refused']}",
        "yes" if not s.get("knee_failures") else "no: " + "; ".join(s["knee_failures"]),
    ]


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows) -> list[str]:
    """A Markdown table: the header, its rule, one line per row."""
    return [_row(header), _row(["---"] * len(header)), *(_row(cells) for cells in rows)]


def render(result: dict) -> str:
    steps = result["steps"]
    lines = _intro(result)
    if any(s.get("phase") for s in steps):
        from plateau import headlines

        lines += plateau_section(steps, headlines(steps))
        steps = [s for s in steps if not s.get("twin")]
    lines += _load_steps_section(result, steps)
    if result.get("saturation_note"):
        lines += [result["saturation_note"], ""]
    if result.get("efficiency"):
        lines += _efficiency_section(result["efficiency"])
    profile = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-profile.md"
    if profile.exists():  # the hot-path profile, measured by bench/profile.py and kept by hand
        lines += [profile.read_text().strip(), ""]
    if result.get("ai"):
        lines += _ai_section(result["ai"])
    if result.get("integrity"):
        lines += _integrity_section(result["integrity"])
    if result.get("session_memory"):
        lines += _session_memory_section(result["session_memory"])
    if result.get("chaos"):
        lines += chaos_table(result["chaos"])
    return "\n".join(lines) + "\n"


def _prose(heading: str, text: str) -> list[str]:
    """A heading and one paragraph."""
    return [heading, "", text, ""]


DOOR_NOTE = (
    ", plus the door (one more instance, 1 worker) that answers visitors holding no "
    "admission pass (the waiting room; BENCH_DOOR=0 runs without it)"
)


def _intro(result: dict) -> list[str]:
    return _prose(
        "# Benchmarks",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make bench`"
        f"{' (BENCH_QUICK=1)' if result['quick'] else ''} on this machine "
        f"({result['machine']}). Topology: nginx (least_conn) → {result['instances']} gunicorn "
        f"instances × {result['workers']} gevent worker(s)"
        f"{DOOR_NOTE if result.get('door') else ''} → Postgres 15 + Redis, fake OpenAI with "
        f"{result['fake_latency']} s latency and its own {result['fake_rpm']}/min limit. "
        "Scheduling, as an operator would set it (each process runs in a session of its own, and "
        "the kernel shares the CPU between sessions first): the door's, nginx's and Redis's "
        f"sessions are ranked {result.get('edge_nice', -10)} (STACK_DOOR_NICE, STACK_EDGE_NICE), "
        f"the app pool's 0, and locust's {result.get('locust_nice', 0)} (BENCH_LOCUST_NICE: the "
        "load generator is a guest on the box it "
        "measures, for the twin as for the app). Locust runs on the "
        "same 2 cores; every simulated user binds its own source address in 127.1.0.0/16, so per-IP "
        "limits see distinct clients. Page latency is nginx's `$request_time` for quiz-taker pages "
        "(server side); `client p99` is what locust saw, including its own queueing. 4xx and 5xx count "
        "quiz-takers' and admins' answers; the abuser (one address hammering `/`) is counted apart.",
    )


def _load_steps_section(result: dict, steps: list[dict]) -> list[str]:
    header = [
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
    rows = (
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
        for s in steps
    )
    best = result.get("max_good_users")
    return [
        "## Load steps" + (" (the app's steps, as before)" if result.get("plateau") else ""),
        "",
        *_table(header, rows),
        "",
        f"**Largest user count with 0 5xx and page p99 < 300 ms: {best if best else 'none of the steps'}.**",
        "",
        "![page latency vs users](benchmarks-latency.png)",
        "",
    ]


def _efficiency_section(eff: dict) -> list[str]:
    rows = [
        ["bare Flask hello", f"{eff['bare_hello']:.0f}"],
        ["app no-op (`/healthz`)", f"{eff['noop_healthz']:.0f}"],
        ["question page (session + limiter + CSRF + template)", f"{eff['question_page']:.0f}"],
    ]
    return [
        "## Efficiency ratio (same run, same gunicorn settings, wrk on loopback)",
        "",
        *_table(["target", "req/s"], rows),
        "",
        f"Question page = **{eff['question_vs_hello']:.0%} of bare hello**, "
        f"{eff['question_vs_noop']:.0%} of the app's no-op endpoint "
        f"({eff['settings']['workers']} worker, {eff['settings']['connections']} connections, "
        f"{eff['settings']['seconds']} s each, median of {eff['settings'].get('rounds', 1)} "
        "interleaved rounds).",
        "",
    ]


def _ai_section(ai: dict) -> list[str]:
    header = [
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
    row = [
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
    return [
        "## AI budget under load (from the fake OpenAI server's call log)",
        "",
        *_table(header, [row]),
        "",
    ]


def _integrity_section(integ: list[dict]) -> list[str]:
    names = list(dict.fromkeys(name for item in integ for name in item["checks"]))
    rows = ([item["users"], *(_fmt_check(item["checks"].get(n, "n/a")) for n in names)] for item in integ)
    return ["## Integrity after each step", "", *_table(["users", *names], rows), ""]


def _session_memory_section(mem: dict) -> list[str]:
    # Prose with figures: alike in shape to _intro (one f-string paragraph), not in content.
    return _prose(
        "## Session memory",
        f"{mem['sessions']:,} real-shaped sessions (one real quiz walk's session, "
        f"{mem['payload_bytes']} B "
        f"msgpack payload) in a private Redis: **{mem['bytes_per_session']} B per session** "
        f"(`MEMORY USAGE` of one key: {mem['memory_usage_one_key']} B; target ≤ 400 B).",
    )


def chaos_table(chaos: list[dict]) -> list[str]:
    header = ["event", "requests during", "failed", "5xx", "recovery s", "lost writes", "note"]
    rows = (
        [
            c["event"],
            c["requests"],
            c["failed"],
            c["status_5xx"],
            c["recovery_s"],
            c["lost_writes"],
            c.get("note", ""),
        ]
        for c in chaos
    )
    return ["## Chaos (`make chaos`)", "", *_table(header, rows), ""]


def _fmt_check(value) -> str:
    if isinstance(value, bool):
        return "ok" if value else "**FAIL**"
    return str(value)
