"""The plateau bench: the no-I/O twin's knee, the app's knee, then 2x and 4x the knee with the
waiting room engaged, and a classroom step (30 users per address). Used by bench/run.py.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quizapp.quiz.data import load_content  # noqa: E402

P99_LIMIT_MS = 300
DELIVERED_SHARE = 0.9
ABUSER_IP = "127.0.0.66"  # bench/locustfile.py Abuser's source address
FIXED_USERS = 2  # the admin poller and the abuser, whatever the user count
NO_GATE = 1_000_000  # capacity while looking for the knee: the per-worker bound alone
# Steps added after the listed ones while they all pass (BENCH_EXTRA_STEPS; 0: the list only).
EXTRA_STEPS = int(os.environ.get("BENCH_EXTRA_STEPS", "3"))
# Each overload factor is measured this many times, interleaved (2x, 4x, 2x, 4x, ...), and the
# headline is the median: at 4x the box has no idle CPU, and one step swings by several percent.
OVERLOAD_REPEATS = max(1, int(os.environ.get("BENCH_OVERLOAD_REPEATS", "3")))
# Each repeat opens with the knee step again (no gate, the overload window), and each overload
# step is also reported as a share of its own repeat's knee step: the box drifts over a run (one
# run's second 2x step served 25 % fewer requests with the same CPU split), and a share of a peak
# measured in the run's first minutes then measures the drift as much as the overload.
# BENCH_PAIRED_REFERENCE=0: no such steps.
PAIRED_REFERENCE = os.environ.get("BENCH_PAIRED_REFERENCE", "1") != "0"
# The capacity the overload steps set live (BENCH_OVERLOAD_CAPACITY): "plateau", the visitors the
# cluster held (slots in use, median over the window) in the knee-region step (the reference steps,
# else the ramp's) that completed the most quizzes within the app's own criteria; "plateau-users",
# that step's users; "knee", the knee's users; or a number of visitors. The capacity counts slots,
# held from a visitor's hand-out to their quiz's submit, and a simulated user spends part of each
# cycle outside one (result, AI poll, pause before the next person): capacity = users put more
# quiz-takers on the box than the step it was read from held (3,250 users held 2,995 slots).
OVERLOAD_CAPACITY = os.environ.get("BENCH_OVERLOAD_CAPACITY", "plateau")


def offered_rps(users: int, seconds: float, ramp: float, seed: int = 7) -> float:
    """Requests per second the quiz-takers would send in the measured window if every answer took
    no time at all: bench/locustfile.py's QuizTaker schedule, simulated.

    Users start evenly over the ramp; one visit is landing and start, then think 3-7 s before
    each answer, submit, one AI poll, email (20%), pay (5%, two requests), think 3-7 s, again.
    The window is [ramp, ramp + seconds], as locust's --reset-stats measures it.
    """
    rng = random.Random(seed)  # nosec B311 - a simulation, not security
    questions = len(load_content(str(ROOT / "quizapp" / "quiz" / "content.yaml")).questions)
    takers = max(users - FIXED_USERS, 0)
    end = ramp + seconds
    sent = 0
    for i in range(takers):
        t = ramp * i / max(takers, 1)
        while t < end:
            times = [t, t]  # landing, start
            for _ in range(questions):
                t += rng.uniform(3, 7)
                times.append(t)
            extra = 2 + (rng.random() < 0.2) + 2 * (rng.random() < 0.05)  # submit, poll, email, pay
            times += [t] * extra
            sent += sum(1 for x in times if ramp <= x < end)
            t += rng.uniform(3, 7)
    return sent / seconds if seconds else 0.0


def _row(stats: dict, name: str) -> dict:
    return stats.get(name) or {}


def _count(stats: dict, name: str) -> int:
    return int(float(_row(stats, name).get("Request Count", 0) or 0))


def _ms(stats: dict, name: str, column: str) -> int:
    value = _row(stats, name).get(column)
    try:
        return round(float(value))
    except (TypeError, ValueError):
        return 0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def step_figures(rows: list[tuple], stats: dict, users: int, measured: float, ramp: float) -> dict:
    """Offered vs delivered, errors, waiting room, wait times and refused started quizzes."""
    real = [
        r
        for name, r in stats.items()
        if name != "Aggregated" and r.get("Type") not in ("FLOW", "WAIT") and name not in ("health", "abuse")
    ]
    delivered = sum(float(r.get("Request Count", 0) or 0) for r in real) / measured
    failures = sum(int(float(r.get("Failure Count", 0) or 0)) for r in real)
    rows = [r for r in rows if r[0] != ABUSER_IP]  # the abuser ignores Retry-After: counted apart
    waiting = [r[4] * 1000 for r in rows if r[5] == "wait"]
    busy = [r[4] * 1000 for r in rows if r[5] == "busy"]
    server_5xx = sum(1 for r in rows if r[3] >= 500 and not r[5] and not r[2].startswith("/api/health/"))
    return {
        "offered_rps": round(offered_rps(users, measured, ramp), 1),
        "delivered_rps": round(delivered, 1),
        "errors": max(failures, server_5xx),
        "waiting_room": {
            "answers": len(waiting),
            "p99_ms": round(_percentile(waiting, 0.99), 1),
            "share_of_requests": round(len(waiting) / max(len(rows), 1), 3),
            # A full worker's answer after ADMISSION_QUEUE_TIMEOUT_MS: the same page, counted apart.
            "busy_answers": len(busy),
            "busy_p99_ms": round(_percentile(busy, 0.99), 1),
        },
        "wait_s": {
            "visitors": _count(stats, "admission wait"),
            "p50": round(_ms(stats, "admission wait", "50%") / 1000, 1),
            "p95": round(_ms(stats, "admission wait", "95%") / 1000, 1),
        },
        "quizzes_started": _count(stats, "quiz started"),
        "started_refused": _count(stats, "started refused"),
    }


def knee_failures(step: dict) -> list[str]:
    """Why a step does not count as a knee step (empty: it counts)."""
    reasons = []
    if step["errors"]:
        reasons.append(f"{step['errors']} errors")
    if step["page"]["p99_ms"] >= P99_LIMIT_MS:
        reasons.append(f"page p99 {step['page']['p99_ms']} ms")
    if step["delivered_rps"] < DELIVERED_SHARE * step["offered_rps"]:
        reasons.append(f"generator delivered {step['delivered_rps']:.0f} of {step['offered_rps']:.0f} req/s")
    if step["waiting_room"]["answers"] or step["waiting_room"].get("busy_answers"):
        reasons.append("waiting room engaged")
    return reasons


def serves_well(step: dict) -> bool:
    """The app's own criteria of a step: 0 errors and page p99 under 300 ms. What an operator
    sees of their cluster; the generator's delivery is locust's criterion, not the app's."""
    return not step["errors"] and step["page"]["p99_ms"] < P99_LIMIT_MS


def overload_capacity(candidates: list[dict], app_knee: int, setting: str = OVERLOAD_CAPACITY) -> int:
    """The capacity for the overload steps. "plateau": an operator sets it to the visitors the
    cluster held (its slots in use) where it completed the most quizzes while serving well, among
    the knee and the first step past it (the knee step's when neither served well; a step without
    slot samples gives its users); "plateau-users": that step's users; "knee"; or a number."""
    setting = setting.strip()
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    if setting == "knee":
        return app_knee
    if setting not in ("plateau", "plateau-users"):  # fail fast: a typo must not quietly measure another
        raise SystemExit(
            'BENCH_OVERLOAD_CAPACITY must be "plateau", "plateau-users", "knee" or a number > 0, '
            f"not {setting!r}"
        )
    good = [s for s in candidates if serves_well(s) and s["users"] >= app_knee]
    best = max(good, key=lambda s: s["quizzes_per_min"]) if good else None
    if best is None:
        best = next((s for s in candidates if s["users"] == app_knee), None)
    if best is None:
        return app_knee
    if setting == "plateau-users":
        return best["users"]
    return held_slots(best) or best["users"]


def held_slots(step: dict) -> int | None:
    """The visitors a step's cluster held: its median slots in use (None: not sampled)."""
    median = (step.get("slots") or {}).get("median")
    return int(median) if median else None


def knee(steps: list[dict]) -> int | None:
    good = [s["users"] for s in steps if not knee_failures(s)]
    return max(good) if good else None


def _users(name: str, default: str) -> list[int]:
    return [int(u) for u in os.environ.get(name, default).split(",") if u.strip()]


def extra_gap(steps: list[int]) -> int:
    """The interval of the steps added past the listed ones: the list's last interval."""
    return steps[-1] - steps[-2] if len(steps) > 1 else steps[-1]


def _ramp(bench, stack, phase: str, steps: list[int], seconds: int, common: dict) -> list[dict]:
    """Ascending steps until the first that fails the knee criteria (bounded durations). When
    every listed step passes, up to EXTRA_STEPS more follow at the list's last interval, so a
    knee above the guess is still found within the run."""
    done = []
    queue = list(steps)
    extra = EXTRA_STEPS
    while queue:
        users = queue.pop(0)
        step = bench.run_step(stack, users, seconds, **common, tag=f"{phase}-{users}", twin=phase == "twin")
        step.update(phase=phase, knee_failures=knee_failures(step))
        done.append(step)
        _save(bench, step)
        if step["knee_failures"]:
            break
        if not queue and extra > 0:
            queue.append(users + extra_gap(steps))
            extra -= 1
    return done


def _save(bench, step: dict) -> None:
    print(json.dumps(step, default=str), flush=True)
    path = bench.STATE / "steps.json"
    saved = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*saved, step], indent=2, default=str))


def knee_region(ramp: list[dict], app_knee: int) -> list[dict]:
    """The knee step and the first step past it (the ramp ascends)."""
    return [s for s in ramp if s["users"] >= app_knee][:2]


def _reference(bench, stack, ramp: list[dict], app_knee: int, seconds: int, common: dict) -> list[dict]:
    """The knee step again, and the first step past it, with the overload steps' window: the
    goodput they are a share of comes from windows as long as theirs. A window holds about one
    visit at 100 s, so completions come in waves and which part of the next wave falls inside it
    moves a step's count by up to a sixth; the ramp's windows only need to show latency and the
    generator's delivery."""
    done = []
    for users in [s["users"] for s in knee_region(ramp, app_knee)]:
        step = bench.run_step(stack, users, seconds, **common, tag=f"reference-{users}")
        step.update(phase="reference", knee_failures=knee_failures(step))
        done.append(step)
        _save(bench, step)
    return done


def _overload(
    bench, stack, app_knee: int, factors: list[int], seconds: int, common: dict, capacity: int | None = None
) -> list[dict]:
    """Each factor x the knee, OVERLOAD_REPEATS times, the factors interleaved so that drift on
    the box (another process, a warmer cache) falls on every factor alike; the capacity set live
    (the knee's users unless given). With PAIRED_REFERENCE, each repeat opens with the knee step."""
    done = []
    for repeat in range(1, OVERLOAD_REPEATS + 1):
        if PAIRED_REFERENCE:
            tag = f"paired-{app_knee}-{repeat}"
            step = bench.run_step(stack, app_knee, seconds, **common, tag=tag, capacity=NO_GATE)
            step.update(phase="reference", paired=True, repeat=repeat, knee_failures=knee_failures(step))
            done.append(step)
            _save(bench, step)
        for factor in factors:
            users = factor * app_knee
            # The operator's setting from the measured plateau: that many visitors at a time.
            tag = f"over-{users}" + (f"-{repeat}" if OVERLOAD_REPEATS > 1 else "")
            step = bench.run_step(stack, users, seconds, **common, tag=tag, capacity=capacity or app_knee)
            step.update(phase="overload", factor=factor, repeat=repeat, knee_failures=knee_failures(step))
            step["knee"] = app_knee
            done.append(step)
            _save(bench, step)
    return done


def run_all(
    bench, env: dict, dsn: str, redis_url: str, quota: int, instances: int, workers: int
) -> list[dict]:
    """Twin ramp, app ramp, overload at 2x/4x the knee, classroom: every step on disk as it ends."""
    # One visit lasts ~80 s: a 100 s window after the ramp sees every user's first quiz complete,
    # enough for the knee criteria (latency, the generator's delivery). Goodput needs longer: the
    # overload steps and the knee's reference steps share a window of several visits.
    seconds = int(os.environ.get("BENCH_STEP_SECONDS", "100"))
    goodput_seconds = int(os.environ.get("BENCH_GOODPUT_SECONDS", "300"))
    over_seconds = int(os.environ.get("BENCH_OVERLOAD_SECONDS", str(goodput_seconds)))
    classroom_seconds = int(os.environ.get("BENCH_CLASSROOM_SECONDS", "60"))
    twin_steps = _users("BENCH_TWIN_STEPS", "250,500,1000,1500,2000,3000")
    app_steps = _users("BENCH_STEPS", "250,500,750,1000,1500,2000")
    factors = _users("BENCH_OVERLOAD_FACTORS", "2,4")
    classroom = _users("BENCH_CLASSROOM_USERS", "300")
    classes = ["QuizTaker", "AdminPoller", "Abuser"]
    # nginx is sized for the largest step: 4x a knee found among the extra steps, too.
    furthest = max(
        max(twin_steps) + EXTRA_STEPS * extra_gap(twin_steps),
        max(app_steps) + EXTRA_STEPS * extra_gap(app_steps),
    )
    expected = furthest * max(factors)
    (bench.STATE / "steps.json").unlink(missing_ok=True)
    common = {"dsn": dsn, "redis_url": redis_url, "env": env, "quota": quota, "classes": classes}
    results = []

    # No door for the twin: it sets no admission cookie, so the door would get every request.
    twin = bench.Stack(
        instances, workers, env, app="bench.twin_app:app", expected_users=expected, name="twin", door=False
    )
    try:
        twin.start()
        results += _ramp(bench, twin, "twin", twin_steps, seconds, common)
    finally:
        twin.stop()

    stack = bench.Stack(instances, workers, env, expected_users=expected)
    try:
        stack.start()
        ramp = _ramp(bench, stack, "ramp", app_steps, seconds, {**common, "capacity": NO_GATE})
        results += ramp
        app_knee = knee(ramp) or ramp[0]["users"]
        # The knee region: the knee and the first step past it, with the overload steps' window.
        region = knee_region(ramp, app_knee)
        if over_seconds != seconds:
            region = _reference(bench, stack, ramp, app_knee, over_seconds, {**common, "capacity": NO_GATE})
            results += region
        capacity = overload_capacity(region, app_knee)
        results += _overload(bench, stack, app_knee, factors, over_seconds, common, capacity)
        for users in classroom:
            step = bench.run_step(
                stack,
                users,
                classroom_seconds,
                **{
                    **common,
                    "classes": ["ClassroomQuizTaker", "AdminPoller", "Abuser"],
                    "env": {**env, "BENCH_WEIGHT_CLASSROOM": "1"},
                },
                tag=f"classroom-{users}",
                capacity=NO_GATE,
            )
            step.update(phase="classroom", knee_failures=knee_failures(step))
            results.append(step)
            _save(bench, step)
    finally:
        stack.stop()
    return results


def headlines(steps: list[dict]) -> dict:
    """Knee, twin knee, ratio, peak goodput, and goodput at 2x/4x the knee as a share of the peak:
    the median over the factor's repeated steps, with the lowest and highest beside it. The peak
    and the knee step's goodput come from steps with the overload steps' window (the reference
    steps when the run has them): a share of a count over another window length compares
    windows, not loads."""
    twin = [s for s in steps if s.get("phase") == "twin"]
    app = [s for s in steps if s.get("phase") in ("ramp", "reference", "overload")]
    ramp = [s for s in app if s["phase"] == "ramp"]
    app_knee, twin_knee = knee(ramp), knee(twin)
    # The window each step asked for (load_step's window_s); runs before it have none: one length.
    over_window = next((s.get("window_s") for s in app if s["phase"] == "overload"), None)
    same = [s for s in app if s.get("window_s") == over_window] if over_window else app
    # The peak over every app step of that window, passing or not: the strictest reference.
    peak = max((s["quizzes_per_min"] for s in same), default=0)
    overload = [s for s in app if s["phase"] == "overload"]
    over: dict[int, list[float]] = {}
    for s in overload:
        over.setdefault(s["factor"], []).append(s["quizzes_per_min"])
    capacity = min((s["capacity"] for s in overload), default=None)
    # The users the factors multiply (runs before the step recorded it: the capacity was the knee).
    knee_used = min((s.get("knee", s["capacity"]) for s in overload), default=None)
    knee_steps = [s for s in same if s["phase"] != "overload" and s["users"] == knee_used]
    at_knee = knee_steps[0]["quizzes_per_min"] if knee_steps else 0
    peak_users = max(same, key=lambda s: s["quizzes_per_min"])["users"] if same else None
    # The step whose held visitors became the capacity (BENCH_OVERLOAD_CAPACITY=plateau), if any.
    held_at = next(
        (s["users"] for s in same if s["phase"] == "reference" and capacity and held_slots(s) == capacity),
        None,
    )

    def shares(reference: float) -> dict:
        return {f: statistics.median(g) / reference if reference else 0 for f, g in over.items()}

    # Each overload step against the knee step that opened its repeat (the same minutes).
    paired_at = {s["repeat"]: s["quizzes_per_min"] for s in app if s.get("paired")}
    paired: dict[int, list[float]] = {}
    for s in overload:
        if paired_at.get(s.get("repeat")):
            paired.setdefault(s["factor"], []).append(s["quizzes_per_min"] / paired_at[s["repeat"]])

    return {
        "knee": app_knee,
        # Every step run met the criteria: the knee is at least this, not found (the step list ended).
        "knee_open": bool(app_knee) and not any(knee_failures(s) for s in ramp),
        "twin_knee_open": bool(twin_knee) and not any(knee_failures(s) for s in twin),
        "knee_used": knee_used,
        "capacity": capacity,
        "capacity_held_at": held_at,
        "twin_knee": twin_knee,
        "ratio": round(app_knee / twin_knee, 2) if app_knee and twin_knee else None,
        "peak_goodput": round(peak),
        "goodput_window_s": over_window,
        "goodput_share": shares(peak),
        "goodput_share_range": {
            f: (min(g) / peak, max(g) / peak) if peak else (0, 0) for f, g in over.items()
        },
        "overload_repeats": {f: len(g) for f, g in over.items()},
        "goodput_share_of_knee": shares(at_knee),
        "goodput_share_paired": {f: statistics.median(g) for f, g in paired.items()},
        "goodput_share_paired_range": {f: (min(g), max(g)) for f, g in paired.items()},
        "peak_users": peak_users,
        "max_5xx": sum(s["status_5xx"] for s in app),
        "started_refused": sum(s.get("started_refused", 0) for s in app),
        "waiting_p99_ms": max((s["waiting_room"]["p99_ms"] for s in app), default=0),
    }
