"""`make bench`: the `make stack` topology under headless locust ramps; writes docs/benchmarks.md.

python bench/run.py                # the plateau: twin knee, app knee, 2x/4x the knee, classroom
BENCH_QUICK=1 python bench/run.py  # two short steps, under 5 minutes
python bench/run.py --smoke        # one 20 s step, asserts 0 5xx and exact integrity (CI)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quizapp.migrate import migrate
from tests.support.servers import free_port

BIN = Path(sys.executable).parent
STATE = ROOT / "var" / "bench"
PAGE_PATHS = re.compile(r'"(GET|POST) (/|/start|/q/[^ ]+|/review|/submit|/r/[^ /]+) HTTP')
SHED = ("wait", "busy")  # X-Admission values of the waiting room's 503s
ABUSER_IP = "127.0.0.66"  # bench/locustfile.py Abuser's source address
LOG_LINE = re.compile(
    r'^(\S+) \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) \d+ rid=\S* rt=([\d.]+)(?:.* adm=(\S+))?'
)
# Users arrive over this long, so their quizzes are spread out as a crowd's are: the measured
# window (after it) sees the steady state, not one synchronized wave of submits.
RAMP_SECONDS = float(os.environ.get("BENCH_RAMP_SECONDS", "60"))


def bench_urls() -> tuple[str, str]:
    """A database and Redis db of the bench's own, so runs never touch development or test data."""
    db = urlparse(os.environ["DATABASE_URL"])
    rd = urlparse(os.environ["REDIS_URL"])
    return urlunparse(db._replace(path="/quizapp_bench")), urlunparse(rd._replace(path="/2"))


def ensure_database(dsn: str) -> None:
    admin = psycopg2.connect(urlunparse(urlparse(dsn)._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = 'quizapp_bench'")
        if not cur.fetchone():
            cur.execute("CREATE DATABASE quizapp_bench")
    admin.close()
    migrate(dsn)


def reset_data(dsn: str, redis_url: str) -> None:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        tables = [r[0] for r in cur.fetchall()]
        cur.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE")
    conn.close()
    redis.Redis.from_url(redis_url).flushdb()


class Stack:
    """scripts/stack.py driven with the bench's own database, Redis db, ports and state dir."""

    def __init__(
        self, instances: int, workers: int, env: dict, *, app="wsgi:app", expected_users=1000, name="stack"
    ):
        self.instances = instances
        self.workers = workers
        self.app = app
        self.expected_users = expected_users
        self.port = free_port()
        self.base_port = free_port()
        self.fake_port = free_port()
        self.state = STATE / name
        self.env = env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, action: str, *extra: str) -> None:
        subprocess.run(
            [
                str(BIN / "python"),
                str(ROOT / "scripts" / "stack.py"),
                action,
                "--state-dir",
                str(self.state),
                *extra,
            ],
            env=self.env,
            check=True,
            cwd=ROOT,
            timeout=180,
        )

    def start(self) -> None:
        self.stop()
        ports = ",".join(str(p) for p in distinct_ports(self.instances, avoid={self.port, self.fake_port}))
        self.run(
            "start",
            "--ports",
            ports,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--fake-openai-port",
            str(self.fake_port),
            "--app",
            self.app,
            "--expected-users",
            str(self.expected_users),
        )

    def stop(self) -> None:
        if self.state.exists():
            self.run("stop")

    def worker_pids(self) -> list[int]:
        pids = []
        for pidfile in self.state.glob("gunicorn-*.pid"):
            master = pidfile.read_text().strip()
            children = Path(f"/proc/{master}/task/{master}/children")
            if children.exists():
                pids += [int(p) for p in children.read_text().split()]
        return pids

    def access_log(self) -> Path:
        return self.state / "nginx" / "access.log"

    def fake_openai(self, path: str, data: dict | None = None) -> dict:
        url = f"http://127.0.0.1:{self.fake_port}/_fake/{path}"
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as response:  # nosec B310 - loopback only
            return json.loads(response.read())


def distinct_ports(count: int, avoid: set[int]) -> list[int]:
    """Free ports, all different (free_port alone may hand the same one out twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in avoid and port not in ports:
            ports.append(port)
    return ports


def rss_mb(pids: list[int]) -> float:
    sizes = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        except FileNotFoundError:
            continue
    return round(sum(sizes) / len(sizes), 1) if sizes else 0.0


def read_log(path: Path, offset: int, since: float = 0.0) -> tuple[list[tuple], int]:
    """Parse nginx access lines written since offset: (addr, method, path, status, seconds, shed),
    shed being "wait" (the waiting room), "busy" (a full worker's waiting-room page) or ""."""
    if not path.exists():
        return [], 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
        end = handle.tell()
    rows = []
    for line in data.decode(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if match:
            addr, stamp, method, target, status, rt, adm = match.groups()
            if since and datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp() < since:
                continue  # the ramp: outside the measured window
            shed = adm if adm in SHED else ""
            rows.append((addr, method, target.split("?")[0], int(status), float(rt), shed))
    return rows, end


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def page_latency(rows: list[tuple]) -> dict:
    times = [
        rt * 1000
        for addr, method, target, status, rt, waiting in rows
        # Admitted quiz-takers' pages: waiting-room answers are reported apart.
        if addr.startswith(("127.1.", "127.2."))
        and not waiting
        and PAGE_PATHS.search(f'"{method} {target} HTTP')
    ]
    return {
        "count": len(times),
        "p50_ms": round(percentile(times, 0.50)),
        "p95_ms": round(percentile(times, 0.95)),
        "p99_ms": round(percentile(times, 0.99)),
    }


def locust_stats(prefix: Path) -> dict:
    stats = {}
    path = prefix.with_name(prefix.name + "_stats.csv")
    if not path.exists():
        return stats
    with open(path) as handle:
        for row in csv.DictReader(handle):
            stats[row["Name"]] = row
    return stats


def run_locust(host: str, users: int, seconds: int, classes: list[str], tag: str, env: dict) -> dict:
    prefix = STATE / f"locust-{tag}"
    spawn_rate = max(1.0, users / RAMP_SECONDS)
    ramp = users / spawn_rate
    cmd = [
        str(BIN / "locust"),
        "-f",
        str(ROOT / "bench" / "locustfile.py"),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{int(seconds + ramp)}s",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--reset-stats",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
        *classes,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=open(STATE / f"locust-{tag}.log", "wb"), stderr=subprocess.STDOUT
    )
    cpu_samples = []
    while proc.poll() is None:
        time.sleep(2)
        cpu_samples.append(_cpu_seconds(proc.pid))
        if time.monotonic() - started > seconds + ramp + 120:
            proc.kill()
    elapsed = time.monotonic() - started
    cpu = cpu_samples[-1] if cpu_samples else 0
    return {
        "stats": locust_stats(prefix),
        "elapsed": elapsed,
        "ramp": ramp,
        "cpu_pct": round(100 * cpu / max(elapsed, 1)),
    }


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, IndexError):
        return 0.0


def integrity(dsn: str, rows: list[tuple], quota: int) -> dict:
    submits_ok = sum(1 for _, m, t, s, *_ in rows if m == "POST" and t == "/submit" and s == 303)
    submits_sent = sum(1 for _, m, t, *_ in rows if m == "POST" and t == "/submit")
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT attempt_key), count(DISTINCT public_id) FROM quiz_attempts"
        )
        attempts, keys, ids = cur.fetchone()
        cur.execute("SELECT coalesce(sum(%(q)s - remaining), 0) FROM quiz_quota", {"q": quota})
        quota_used = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM payments")
        payments = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM quiz_attempts WHERE paid_at IS NOT NULL")
        unlocked = cur.fetchone()[0]
    conn.close()
    return integrity_checks(submits_ok, attempts, keys, ids, quota_used, payments, unlocked, submits_sent)


def integrity_checks(
    confirmed, attempts, keys, ids, quota_used, payments, unlocked, submits_sent=None
) -> dict:
    """No confirmed write lost, no duplicate, quota exact, payments = unlocks.

    Under overload a submit can commit while its answer never reaches the client (nginx 504, client
    gone): that attempt exists without a 303 in the log. It is counted, not called a loss; a loss is
    a 303-confirmed submit missing from Postgres.
    """
    checks = {
        "submits answered 303": confirmed,
        "attempts in Postgres": attempts,
        "no confirmed write lost": attempts >= confirmed,
        "committed, answer lost in overload": attempts - confirmed if attempts > confirmed else 0,
        "no duplicates": attempts == keys == ids,
        "quota used = attempts": quota_used == attempts,
        "payments": payments,
        "payments = unlocks": payments == unlocked,
    }
    if submits_sent is not None:
        checks["no attempt without a submit"] = attempts <= submits_sent
    return checks


def normalise_integrity(checks: dict) -> dict:
    """Steps measured before integrity_checks existed carried 'attempts = submits'."""
    if "attempts = submits" not in checks:
        return checks
    confirmed, attempts = checks["submits answered 303"], checks["attempts in Postgres"]
    return integrity_checks(
        confirmed,
        attempts,
        attempts if checks["no duplicates"] else -1,
        attempts if checks["no duplicates"] else -1,
        attempts if checks["quota used = attempts"] else -1,
        checks["payments"],
        checks["payments"] if checks["payments = unlocks"] else -1,
    )


def ai_figures(stack: Stack, budget: int, window: float) -> dict:
    try:
        log = stack.fake_openai("calls")
    except OSError:
        log = {}
    starts = sorted(c["start"] for c in log.get("calls", []))
    max_in_window = 0
    for i, t in enumerate(starts):
        j = i
        while j < len(starts) and starts[j] < t + window:
            j += 1
        max_in_window = max(max_in_window, j - i)
    windows_over = 0
    utilisation = "n/a"
    if starts:
        full_windows = []
        t = starts[0]
        end = starts[-1]
        while t + window <= end + window / 2:
            count = sum(1 for s in starts if t <= s < t + window)
            full_windows.append(count)
            windows_over += count > budget
            t += window
        if full_windows:
            utilisation = f"{sum(full_windows) / (budget * len(full_windows)):.0%}"
    return {
        "budget": budget,
        "window_s": window,
        "calls": len(starts),
        "max_in_window": max_in_window,
        "windows_over_budget": windows_over,
        "utilisation": utilisation,
        "max_in_flight": log.get("max_concurrency", "n/a"),
    }


def health(stack: Stack) -> dict:
    try:
        with urllib.request.urlopen(stack.url + "/api/health/detailed", timeout=10) as response:  # nosec B310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503 still carries the JSON body
        return json.loads(exc.read())
    except OSError:
        return {}


def ai_counter(document: dict, key: str) -> int:
    """A cluster-wide AI counter: every worker's heartbeat carries the same Redis figure."""
    return max((int(w.get("ai", {}).get(key, 0) or 0) for w in document.get("workers", [])), default=0)


def _find(data, key):
    """Sum every value stored under `key` anywhere in a nested health document."""
    if isinstance(data, dict):
        return sum(
            _find(v, key) if k != key else (v if isinstance(v, (int, float)) else 0) for k, v in data.items()
        )
    if isinstance(data, list):
        return sum(_find(v, key) for v in data)
    return 0


def run_step(
    stack: Stack,
    users: int,
    seconds: int,
    dsn: str,
    redis_url: str,
    env: dict,
    quota: int,
    classes: list[str],
    *,
    tag: str | None = None,
    capacity: int | None = None,
    twin: bool = False,
) -> dict:
    reset_data(dsn, redis_url)
    if capacity is not None:  # what an admin's live change does (quizapp/admission)
        redis.Redis.from_url(redis_url).hset("adm:state", "capacity", capacity)
    try:
        stack.fake_openai("reset", {})
    except OSError:
        pass
    before = health(stack)
    _, offset = read_log(stack.access_log(), 0)
    started = time.time()
    run = run_locust(stack.url, users, seconds, classes, tag or str(users), env)
    time.sleep(1)
    every_row, _ = read_log(stack.access_log(), offset)  # integrity: every submit of the run
    rows, _ = read_log(stack.access_log(), offset, since=started + run["ramp"])
    after = health(stack)
    stats = run["stats"]
    measured = max(run["elapsed"] - run["ramp"], 1)
    total = stats.get("Aggregated", {})
    flows = int(stats.get("quiz completed", {}).get("Request Count", 0) or 0)
    client_p99 = stats.get("question", {}).get("99%", "n/a")
    # /api/health/detailed answers 503 by design when the cluster scores low: a report, not a failure.
    statuses = [r[3] for r in rows if not r[2].startswith("/api/health/") and r[0] != ABUSER_IP and not r[5]]
    abuser = [r[3] for r in rows if r[0] == ABUSER_IP]
    health_503 = sum(1 for r in rows if r[2].startswith("/api/health/") and r[3] == 503)
    import plateau

    return {
        # Locust's own window (after the ramp, before the stop), not wall time with start-up and stop.
        **plateau.step_figures(rows, stats, users, seconds, run["ramp"]),
        "ai": ai_figures(stack, int(env.get("AI_RPM", "10")), float(env.get("AI_WINDOW_SECONDS", "60"))),
        "twin": twin,
        "capacity": capacity,
        "users": users,
        "seconds": round(measured),
        "rps": float(total.get("Requests/s", 0) or 0),
        "quizzes_per_min": flows / (seconds / 60),  # locust's window, as delivered req/s
        "page": page_latency(rows),
        "client_p99_ms": client_p99,
        "status_4xx": sum(400 <= s < 500 for s in statuses),
        "status_429": sum(s == 429 for s in statuses),
        "status_5xx": sum(s >= 500 for s in statuses),
        "health_503_polls": health_503,
        "abuser_requests": len(abuser),
        "abuser_429": sum(s == 429 for s in abuser),
        "rss_mb_per_worker": rss_mb(stack.worker_pids()),
        "pool_waits": int(_find(after, "waited") - _find(before, "waited")),
        "locust_cpu_pct": run["cpu_pct"],
        "integrity": {} if twin else integrity(dsn, every_row, quota),
        "ai_metrics": {
            k: ai_counter(after, k) - ai_counter(before, k)
            for k in ("dedup_hits", "cache_hits", "fallbacks", "calls")
        },
        # Recent waits from queueing to an answer (AI or marked fallback), cluster-wide in Redis.
        "ai_wait_p95_s": max(
            (w.get("ai", {}).get("wait_p95_seconds") or 0 for w in after.get("workers", [])), default=0
        ),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one 20 s step for CI")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="re-render from var/bench/steps.json")
    args = parser.parse_args(argv)
    quick = os.environ.get("BENCH_QUICK") == "1"
    if args.smoke:
        steps, seconds = [int(os.environ.get("BENCH_SMOKE_USERS", "8"))], 20
    elif quick:
        steps, seconds = [200, 500], 60
    else:
        steps = [int(u) for u in os.environ.get("BENCH_STEPS", "500,1000,2000,5000").split(",")]
        seconds = int(os.environ.get("BENCH_STEP_SECONDS", "120"))
    STATE.mkdir(parents=True, exist_ok=True)
    dsn, redis_url = bench_urls()
    if args.report_only:
        results = json.loads((STATE / "steps.json").read_text())
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis_url}
        return write_report(
            results,
            quick,
            int(os.environ.get("BENCH_INSTANCES", "4")),
            int(os.environ.get("BENCH_WORKERS", "1")),
            os.environ.get("FAKE_OPENAI_LATENCY", "1.5"),
            os.environ.get("FAKE_OPENAI_RPM", "60"),
            env,
            reuse=True,
        )
    ensure_database(dsn)
    quota = int(os.environ.get("QUIZ_DAILY_QUOTA", "20"))
    ai_rpm = int(os.environ.get("AI_RPM", "10"))
    ai_window = float(os.environ.get("AI_WINDOW_SECONDS", "20" if args.smoke or quick else "60"))
    fake_latency = os.environ.get("FAKE_OPENAI_LATENCY", "1.5")
    fake_rpm = os.environ.get("FAKE_OPENAI_RPM", "60")
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "QUIZAPP_ENV": "development",
        "PAYMENT_PROVIDER": "test",
        "AI_RPM": str(ai_rpm),
        "AI_WINDOW_SECONDS": str(ai_window),
        "FAKE_OPENAI_LATENCY": fake_latency,
        "FAKE_OPENAI_RPM": fake_rpm,
        "DB_POOL_MAX": os.environ.get("DB_POOL_MAX", "20"),
        # A slot frees when its visitor submits; the app's default bound (120 s) covers a slow visit.
        "ADMISSION_VISIT_SECONDS": os.environ.get("ADMISSION_VISIT_SECONDS", "120"),
        # nginx's access log (request id, timings) is the bench's record; one log line per request is enough.
        "GUNICORN_ACCESS_LOG": os.environ.get("GUNICORN_ACCESS_LOG", ""),
        "BENCH_WEIGHT_FAST": "10" if args.smoke else os.environ.get("BENCH_WEIGHT_FAST", "0"),
    }
    env.pop("OPENAI_API_KEY", None)
    instances = int(os.environ.get("BENCH_INSTANCES", "2" if args.smoke else "4"))
    workers = int(os.environ.get("BENCH_WORKERS", "1"))
    if not (args.smoke or quick):
        import plateau

        results = plateau.run_all(self_module(), env, dsn, redis_url, quota, instances, workers)
        return (
            0
            if args.no_report
            else write_report(results, quick, instances, workers, fake_latency, fake_rpm, env)
        )
    stack = Stack(instances, workers, env)
    results = []
    try:
        stack.start()
        # The smoke has no think time so that whole quizzes complete within its 20 s.
        classes = ["FastQuizTaker", "AdminPoller"] if args.smoke else ["QuizTaker", "AdminPoller", "Abuser"]
        for users in steps:
            step = run_step(stack, users, seconds, dsn, redis_url, env, quota, classes)
            results.append(step)
            print(json.dumps(step, default=str))
            (STATE / "steps.json").write_text(json.dumps(results, indent=2, default=str))
    finally:
        stack.stop()
    if args.smoke:
        step = results[0]
        failures = [k for k, v in step["integrity"].items() if v is False]
        ok = step["status_5xx"] == 0 and not failures and step["integrity"]["attempts in Postgres"] > 0
        ok = ok and step["ai"]["windows_over_budget"] == 0
        print(f"bench smoke: {'ok' if ok else 'FAILED'} ({step['integrity']}, 5xx={step['status_5xx']})")
        return 0 if ok else 1
    if args.no_report:
        return 0
    return write_report(results, quick, instances, workers, fake_latency, fake_rpm, env)


def self_module():
    """This module as plateau.py sees it (run as a script it is __main__, not `run`)."""
    return sys.modules[__name__]


def write_report(results, quick, instances, workers, fake_latency, fake_rpm, env, reuse=False) -> int:
    import efficiency
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
        "instances": instances,
        "workers": workers,
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
    report.plot_latency(app_steps, docs / "benchmarks-latency.png")
    if any(s.get("phase") for s in results):
        report.plot_plateau(results, docs / "benchmarks-plateau.png")
    (docs / "benchmarks.md").write_text(report.render(result))
    (STATE / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {docs / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    if not shutil.which("wrk"):
        print("bench: wrk is missing (make bench installs it)", file=sys.stderr)
    sys.exit(main())
