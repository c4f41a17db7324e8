"""`make bench`: the `make stack` topology under headless locust ramps; writes docs/benchmarks.md.

python bench/run.py                # the plateau: twin knee, app knee, 2x/4x the knee, classroom
BENCH_QUICK=1 python bench/run.py  # two short steps, under 5 minutes
BENCH_DOOR=0 python bench/run.py   # without the door instance (default 1: with it), to compare
python bench/run.py --smoke        # one 20 s step, asserts 0 5xx and exact integrity (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# plateau.py drives the steps through this module: bench.Stack, bench.run_step, bench.STATE.
from environment import STATE, Stack, app_env, bench_urls, door_wanted, ensure_database, interpreter
from integrity import normalise_integrity
from load_step import LOCUST_NICE, run_step

from devstack.stack import EDGE_NICE

__all__ = ["STATE", "Stack", "main", "run_step"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one 20 s step for CI")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render from the last full run's var/bench/steps.json"
    )
    args = parser.parse_args(argv)
    quick = os.environ.get("BENCH_QUICK") == "1"
    if args.smoke:
        steps, seconds = [int(os.environ.get("BENCH_SMOKE_USERS", "8"))], 20
    elif quick:
        steps = [int(u) for u in os.environ.get("BENCH_QUICK_STEPS", "200,500").split(",")]
        seconds = 60
    else:
        steps = [int(u) for u in os.environ.get("BENCH_STEPS", "500,1000,2000,5000").split(",")]
        seconds = int(os.environ.get("BENCH_STEP_SECONDS", "120"))
    STATE.mkdir(parents=True, exist_ok=True)
    print(f"bench: Python {interpreter()}")  # a shared libpython: rm -rf .venv && make venv (Makefile)
    dsn, redis_url = bench_urls()
    if args.report_only:
        results = json.loads((STATE / "steps.json").read_text())
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis_url}
        return write_report(
            results,
            quick,
            int(os.environ.get("BENCH_INSTANCES", default_instances())),
            int(os.environ.get("BENCH_WORKERS", "1")),
            os.environ.get("FAKE_OPENAI_LATENCY", "1.5"),
            os.environ.get("FAKE_OPENAI_RPM", "60"),
            env,
            reuse=True,
        )
    ensure_database(dsn)
    quota = int(os.environ.get("QUIZ_DAILY_QUOTA", "20"))
    env = app_env(dsn, redis_url, smoke=args.smoke, quick=quick)
    fake_latency, fake_rpm = env["FAKE_OPENAI_LATENCY"], env["FAKE_OPENAI_RPM"]
    instances = int(os.environ.get("BENCH_INSTANCES", "2" if args.smoke else default_instances()))
    workers = int(os.environ.get("BENCH_WORKERS", "1"))
    if not (args.smoke or quick):
        import plateau

        results = plateau.run_all(self_module(), env, dsn, redis_url, quota, instances, workers)
        return (
            0
            if args.no_report
            else write_report(results, quick, instances, workers, fake_latency, fake_rpm, env)
        )
    # The smoke has no think time so that whole quizzes complete within its 20 s.
    classes = ["FastQuizTaker", "AdminPoller"] if args.smoke else ["QuizTaker", "AdminPoller", "Abuser"]
    common = {"dsn": dsn, "redis_url": redis_url, "env": env, "quota": quota, "classes": classes}
    # Quick and smoke steps go to their own file: --report-only re-renders the last full run.
    saved_as = STATE / ("steps-smoke.json" if args.smoke else "steps-quick.json")
    results = _run_steps(Stack(instances, workers, env), steps, seconds, common, saved_as)
    if args.smoke:
        return _smoke_verdict(results[0])
    if args.no_report:
        return 0
    return write_report(results, quick, instances, workers, fake_latency, fake_rpm, env)


def _run_steps(stack: Stack, steps: list[int], seconds: int, common: dict, saved_as: Path) -> list[dict]:
    """One step per user count on one stack; every step on disk as it ends."""
    results = []
    try:
        stack.start()
        for users in steps:
            step = run_step(stack, users, seconds, **common)
            results.append(step)
            print(json.dumps(step, default=str))
            saved_as.write_text(json.dumps(results, indent=2, default=str))
    finally:
        stack.stop()
    return results


def _smoke_verdict(step: dict) -> int:
    """0 when the smoke step had no 5xx, every integrity check held, attempts landed, AI within budget."""
    failures = [k for k, v in step["integrity"].items() if v is False]
    ok = step["status_5xx"] == 0 and not failures and step["integrity"]["attempts in Postgres"] > 0
    ok = ok and step["ai"]["windows_over_budget"] == 0
    print(f"bench smoke: {'ok' if ok else 'FAILED'} ({step['integrity']}, 5xx={step['status_5xx']})")
    return 0 if ok else 1


def default_instances() -> str:
    """One gunicorn instance per core the bench may use: on the 2-core box, 2 instances reached a
    knee of 750 users where 4 reached 500 (docs/benchmarks.md)."""
    return str(len(os.sched_getaffinity(0)))


def self_module():
    """This module as plateau.py sees it (run as a script it is __main__, not `run`)."""
    return sys.modules[__name__]


def write_report(results, quick, instances, workers, fake_latency, fake_rpm, env, reuse=False) -> int:
    import efficiency
    import plots
    import report
    import session_memory

    # --report-only re-renders the steps and keeps the last run's efficiency and memory figures.
    saved = STATE / "bench.json"
    previous = json.loads(saved.read_text()) if reuse and saved.exists() else {}
    app_steps = [s for s in results if not s.get("twin")]
    good = [s["users"] for s in app_steps if s["status_5xx"] == 0 and s["page"]["p99_ms"] < 300]
    biggest_ai = max(results, key=lambda s: s["ai"]["calls"])
    ai = {
        **biggest_ai["ai"],
        **{k: int(v) for k, v in biggest_ai["ai_metrics"].items()},
        "p95_time_to_analysis_s": biggest_ai["ai_wait_p95_s"],
        "users": biggest_ai["users"],
    }
    saturated = [s for s in results if s["locust_cpu_pct"] >= 90]
    note = ""
    if saturated:
        note = (
            "Note: the load generator itself saturated a core (locust CPU ≥ 90%) at "
            + ", ".join(str(s["users"]) for s in saturated)
            + " users; latencies at those steps include locust's own queueing (client p99) and the "
            "server-side figures are what the app delivered while sharing the 2 cores with it."
        )
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL")})
    result = {
        "quick": quick,
        "machine": f"{os.cpu_count()} cores",
        "python": interpreter(),
        "instances": instances,
        "workers": workers,
        "door": door_wanted(),
        "edge_nice": int(os.environ.get("STACK_EDGE_NICE", EDGE_NICE)),
        "locust_nice": LOCUST_NICE,
        "fake_latency": fake_latency,
        "fake_rpm": fake_rpm,
        "steps": results,
        "max_good_users": max(good) if good else None,
        "saturation_note": note,
        "efficiency": previous.get("efficiency") or efficiency.measure(seconds=5 if quick else 10),
        "ai": ai,
        "integrity": [
            {"users": s["users"], "phase": s.get("phase", ""), "checks": normalise_integrity(s["integrity"])}
            for s in app_steps
        ],
        "session_memory": previous.get("session_memory") or session_memory.measure(100_000),
    }
    chaos_file = STATE / "chaos.json"
    if chaos_file.exists():
        result["chaos"] = json.loads(chaos_file.read_text())
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    plots.plot_latency(app_steps, docs / "benchmarks-latency.png")
    if any(s.get("phase") for s in results):
        plots.plot_plateau(results, docs / "benchmarks-plateau.png")
    (docs / "benchmarks.md").write_text(report.render(result))
    (STATE / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {docs / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    if not shutil.which("wrk"):
        print("bench: wrk is missing (make bench installs it)", file=sys.stderr)
    sys.exit(main())
