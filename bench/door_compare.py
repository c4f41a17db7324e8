"""The door's effect, measured: one overload step with and without the door instance, interleaved.

python bench/door_compare.py   # DOOR_COMPARE_USERS=1500 DOOR_COMPARE_CAPACITY=750 (2x the knee),
                               # DOOR_COMPARE_SECONDS=60, DOOR_COMPARE_ROUNDS=2,
                               # DOOR_COMPARE_VARIANTS=off,door,door-nice0 (also door-5, door-only;
                               # NAME@base: every instance runs the code tree DOOR_COMPARE_BASE,
                               # e.g. an export of main, for an A/B of code: door@base,door)
Each round runs every variant once, in order, on a fresh stack, so a busy neighbour on the shared
box weighs on all of them alike. Prints one JSON line per run, a table at the end, and where the
waiting room's answers spent their time: nginx's times and each process's waits for a core.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("BENCH_RAMP_SECONDS", "30")  # read by load_step at import

import door_timing  # noqa: E402
import redis  # noqa: E402
from door_timing import CpuWaits  # noqa: E402
from environment import STATE, Stack, app_env, bench_urls, ensure_database  # noqa: E402
from load_step import run_step  # noqa: E402

from devstack.stack import DOOR_NICE, EDGE_NICE  # noqa: E402

# name -> (door, the door's niceness, nginx's and the local Redis's): each a session's niceness
# (devstack.processes.rank_session; STACK_DOOR_NICE, STACK_EDGE_NICE)
VARIANTS = {
    "off": (False, 0, 0),
    "door": (True, DOOR_NICE, EDGE_NICE),  # as make stack and the bench run it
    "door-5": (True, -5, -5),
    "door-nice0": (True, 0, 0),  # as before rank_session: nice(1) ranked the door against nothing
    "door-only": (True, DOOR_NICE, 0),
}


def redis_pid(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).info("server")["process_id"])


def run_variant(name: str, env: dict, common: dict, users: int, seconds: int, capacity: int) -> dict:
    """One run; "NAME@base" runs every instance from the code tree DOOR_COMPARE_BASE (e.g. main's)."""
    variant, _, base = name.partition("@")
    door, nice, edge_nice = VARIANTS[variant]
    stack_env = {**env, "STACK_DOOR_NICE": str(nice), "STACK_EDGE_NICE": str(edge_nice)}
    if base:  # gunicorn changes to that directory first: its wsgi and quizapp are imported
        stack_env["GUNICORN_CMD_ARGS"] = f"--chdir {os.environ['DOOR_COMPARE_BASE']}"
    stack = Stack(
        int(os.environ.get("BENCH_INSTANCES", len(os.sched_getaffinity(0)))),
        1,
        stack_env,
        expected_users=users,
        name=f"door-compare-{variant}",
        door=door,
    )
    try:
        stack.start()
        log = stack.access_log()
        offset = log.stat().st_size if log.exists() else 0
        ramp = users / max(1.0, users / float(os.environ["BENCH_RAMP_SECONDS"]))
        # The window opens after the ramp and the step's own set-up (data reset, a health read).
        processes = door_timing.stack_processes(stack.state, redis_pid(common["redis_url"]))
        waits = CpuWaits(processes, opens_after=ramp + 3, seconds=seconds - 5).start()
        step = run_step(stack, users, seconds, **common, tag=f"door-{name}-{users}", capacity=capacity)
        timings = door_timing.answer_timings(log, offset)
        cpu_waits = waits.figures()
        door_cpu = waits.door_cpu_per_answer(log, offset, door_port=stack.door_port)
    finally:
        stack.stop()
    return {
        "variant": name,
        "users": users,
        "capacity": capacity,
        "waiting_answers": step["waiting_room"]["answers"],
        "waiting_p99_ms": step["waiting_room"]["p99_ms"],
        "busy_answers": step["waiting_room"]["busy_answers"],
        "page_p50_ms": step["page"]["p50_ms"],
        "page_p99_ms": step["page"]["p99_ms"],
        "quizzes_per_min": round(step["quizzes_per_min"], 1),
        "status_5xx": step["status_5xx"],
        "started_refused": step["started_refused"],
        "locust_cpu_pct": step["locust_cpu_pct"],
        # The door's CPU per answer in the measured window (us), and its answers there by kind.
        "door_cpu_us": door_cpu.get("us"),
        "door_answers": {k: v for k, v in door_cpu.items() if k != "us"},
        # Every waiting-room answer of the run (the ramp too): nginx's times, its own share apart.
        "timings": timings,
        "cpu_waits": cpu_waits,
    }


def main() -> int:
    users = int(os.environ.get("DOOR_COMPARE_USERS", "1500"))
    capacity = int(os.environ.get("DOOR_COMPARE_CAPACITY", "750"))
    seconds = int(os.environ.get("DOOR_COMPARE_SECONDS", "60"))
    rounds = int(os.environ.get("DOOR_COMPARE_ROUNDS", "2"))
    variants = os.environ.get("DOOR_COMPARE_VARIANTS", "off,door,door-nice0").split(",")
    STATE.mkdir(parents=True, exist_ok=True)
    dsn, redis_url = bench_urls()
    ensure_database(dsn)
    env = app_env(dsn, redis_url, smoke=False, quick=False)
    classes = ["QuizTaker", "AdminPoller", "Abuser"]
    quota = int(os.environ.get("QUIZ_DAILY_QUOTA", "20"))
    common = {"dsn": dsn, "redis_url": redis_url, "env": env, "quota": quota, "classes": classes}
    runs = []
    for _ in range(rounds):
        for name in variants:
            runs.append(run_variant(name, env, common, users, seconds, capacity))
            print(json.dumps(runs[-1]), flush=True)
    (STATE / "door-compare.json").write_text(json.dumps(runs, indent=2))
    columns = [c for c in runs[0] if c not in ("timings", "cpu_waits")] if runs else []
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for run in runs:
        print("| " + " | ".join(str(run[c]) for c in columns) + " |")
    print_where(runs)
    return 0


def print_where(runs: list[dict]) -> None:
    """Where the waiting-room answers' time went: nginx's times, and each process's CPU waits."""
    roles = ("door", "nginx", "redis", "pool-0")
    head = ["variant", "rt p50", "rt p99", "upstream header p99", "nginx own p99"]
    head += [f"{r} cpu% / runq ms/s / wait per wake-up us" for r in roles]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for run in runs:
        t, w = run["timings"], run["cpu_waits"]
        cells = [run["variant"], t.get("rt_p50"), t.get("rt_p99"), t.get("uht_p99"), t.get("nginx_own_p99")]
        for role in roles:
            f = w.get(role)
            cells.append(f"{f['cpu_pct']} / {f['runq_ms_per_s']} / {f['wait_per_wakeup_us']}" if f else "-")
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
