"""The door's effect, measured: one overload step with and without the door instance, interleaved.

python bench/door_compare.py   # DOOR_COMPARE_USERS=1500 DOOR_COMPARE_CAPACITY=750 (2x the knee),
                               # DOOR_COMPARE_SECONDS=60, DOOR_COMPARE_ROUNDS=2,
                               # DOOR_COMPARE_VARIANTS=off,door,door-nice0
Each round runs every variant once, in order, on a fresh stack, so a busy neighbour on the shared
box weighs on all of them alike. Prints one JSON line per run and a table at the end.
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

from environment import STATE, Stack, app_env, bench_urls, ensure_database  # noqa: E402
from load_step import run_step  # noqa: E402

# name -> (door, the door's niceness)
VARIANTS = {"off": (False, 0), "door": (True, -5), "door-nice0": (True, 0)}


def run_variant(name: str, env: dict, common: dict, users: int, seconds: int, capacity: int) -> dict:
    door, nice = VARIANTS[name]
    stack_env = {**env, "STACK_DOOR_NICE": str(nice)}
    stack = Stack(
        int(os.environ.get("BENCH_INSTANCES", len(os.sched_getaffinity(0)))),
        1,
        stack_env,
        expected_users=users,
        name=f"door-compare-{name}",
        door=door,
    )
    try:
        stack.start()
        step = run_step(stack, users, seconds, **common, tag=f"door-{name}-{users}", capacity=capacity)
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
    columns = list(runs[0]) if runs else []
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for run in runs:
        print("| " + " | ".join(str(run[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
