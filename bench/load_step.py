"""One load step: locust against a stack, nginx's access log and the health report around it, the figures."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import box_cpu
import plateau
import redis
from environment import STATE, reset_data
from integrity import integrity

from devstack.local_stack import LocalStack
from devstack.processes import rank_session
from quizapp import config_readers
from quizapp.admission.repository import ACTIVE_KEY, pace_in_effect
from quizapp.admission.service import pace_setting_milli

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PAGE_PATHS = re.compile(r'"(GET|POST) (/|/start|/q/[^ ]+|/review|/submit|/r/[^ /]+) HTTP')
SHED = ("wait", "busy")  # X-Admission values of the waiting room's 503s
ABUSER_IP = "127.0.0.66"  # bench/locustfile.py Abuser's source address
LOG_LINE = re.compile(
    r'^(\S+) \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) \d+ rid=\S* rt=([\d.]+)(?:.* adm=(\S+))?'
)
# Users arrive over this long, so their quizzes are spread out as a crowd's are: the measured
# window (after it) sees the steady state, not one synchronized wave of submits.
RAMP_SECONDS = float(os.environ.get("BENCH_RAMP_SECONDS", "60"))
# Locust's session's niceness against the servers' (each runs in a session of its own, and the
# scheduler shares the CPU between sessions first): the load generator is a guest on the box it
# measures (an A/B at 875 users: page p99 1,143 / 845 ms level with the app, 513 / 324 ms at 5).
# The delivered-rate rule still catches a starved generator: such a step is no knee step.
LOCUST_NICE = int(os.environ.get("BENCH_LOCUST_NICE", "5"))
# Locust processes (--processes: one master and this many workers, the users shared between them).
# One process tops out at about 600 requests a second on this box, below what the app serves.
LOCUST_PROCESSES = int(os.environ.get("BENCH_LOCUST_PROCESSES", "2"))


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
            if adm == "admit":
                continue  # the door sent a form post on (a 307, quizapp/admission): the repeat is the page
            shed = adm if adm in SHED else ""
            rows.append((addr, method, target.split("?")[0], int(status), float(rt), shed))
    return rows, end


def settle_log(path: Path, quiet: float = 2.0, longest: float = 30.0) -> None:
    """Wait until nginx has logged the requests still in flight when locust stopped (the log has
    not grown for `quiet` seconds; at most `longest`). A submit that commits after the log is read
    would otherwise be an attempt in Postgres without its request in the log."""
    deadline = time.monotonic() + longest
    size, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = path.stat().st_size if path.exists() else 0
        if now_size != size:
            size, still_since = now_size, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return
        time.sleep(0.25)


def drain(read_in_flight, longest: float = 30.0, settled_reads: int = 2, every: float = 1.0) -> bool:
    """Wait until the workers have finished what locust left in flight: `settled_reads` readings in
    a row of at most one request in flight (the health probe that reads it). A submit queued behind
    a full worker's bound when locust stopped commits seconds later; the integrity read must come
    after it (in one slow 2x step two attempts were in Postgres with no request in the log yet).
    True when drained, False after `longest` seconds."""
    deadline = time.monotonic() + longest
    settled = 0
    while time.monotonic() < deadline:
        in_flight = read_in_flight()
        settled = settled + 1 if in_flight is not None and in_flight <= 1 else 0
        if settled >= settled_reads:
            return True
        time.sleep(every)
    return False


def cluster_in_flight(stack: LocalStack) -> int | None:
    """Requests in flight over the cluster's workers, from their heartbeats (every
    HEARTBEAT_SECONDS); None when the health API does not answer."""
    workers = health(stack).get("workers")
    if workers is None:
        return None
    return sum(int((w.get("admission") or {}).get("in_flight", 0) or 0) for w in workers)


def first_request(path: Path, offset: int, default: float) -> float:
    """When the first simulated person's request reached nginx (`default` if none did)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        for line in handle:
            match = LOG_LINE.match(line.decode(errors="replace"))
            if match and match.group(1).startswith(("127.1.", "127.2.")):
                return datetime.strptime(match.group(2), "%d/%b/%Y:%H:%M:%S %z").timestamp()
    return default


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


def run_locust(
    host: str, users: int, seconds: int, classes: list[str], tag: str, env: dict, sample_slots=None
) -> dict:
    """One locust run; sample_slots (optional): called every 2 s of the measured window."""
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
        *(["--processes", str(LOCUST_PROCESSES)] if LOCUST_PROCESSES > 1 else []),
        *classes,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        env={**env, "BENCH_LOCUST_PROCESSES": str(max(LOCUST_PROCESSES, 1))},
        cwd=ROOT,
        stdout=open(STATE / f"locust-{tag}.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if LOCUST_NICE:
        rank_session(proc.pid, LOCUST_NICE)
    cpu_samples = []
    window_start = window_end = None  # the whole box's CPU when the measured window opens and closes
    slots = []
    while proc.poll() is None:
        time.sleep(2)
        cpu_samples.append(_cpu_seconds(proc.pid))
        running = time.monotonic() - started
        if window_start is None and running >= ramp:
            window_start = box_cpu.snapshot()
        elif window_start is not None and running <= seconds + ramp:
            window_end = box_cpu.snapshot()
            if sample_slots is not None:
                slots.append(sample_slots())
        if running > seconds + ramp + 120:
            proc.kill()
    elapsed = time.monotonic() - started
    cpu = max(cpu_samples, default=0)  # the workers exit before the master's last sample
    return {
        "stats": locust_stats(prefix),
        "elapsed": elapsed,
        "ramp": ramp,
        "cpu_pct": round(100 * cpu / max(elapsed, 1)),
        "box_cpu": box_cpu.usage(window_start, window_end) if window_end else {},
        "slots": [n for n in slots if n is not None],
    }


def slot_sampler(redis_url: str):
    """The waiting room's slots in use now (adm:active): the visitors the cluster holds, from a
    hand-out to the quiz's submit. With no gate every new visitor still takes one, so a step
    without a gate measures how many visitors the cluster held at that load."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)

    def sample() -> int | None:
        try:
            return int(client.zcount(ACTIVE_KEY, int(time.time() * 1000), "+inf"))
        except redis.RedisError:
            return None

    return sample


def slot_figures(samples: list[int]) -> dict:
    """Median and spread of the slots in use over the measured window (empty: not sampled)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    return {
        "median": ordered[len(ordered) // 2],
        "p10": ordered[len(ordered) // 10],
        "p90": ordered[(len(ordered) * 9) // 10],
        "samples": len(ordered),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (locust's --processes workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, IndexError):
        return 0.0
    return own + sum(_cpu_seconds(int(child)) for child in children)


def ai_figures(stack: LocalStack, budget: int, window: float) -> dict:
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


def step_pace(env: dict, capacity: int | None) -> float | None:
    """The admission pace the app applies with this live capacity (auto: derived from it in Redis)."""
    if capacity is None:
        return None
    setting = config_readers.pace(env, "ADMISSION_PACE_PER_SECOND", -1.0)
    visit_seconds = int(env.get("ADMISSION_VISIT_SECONDS") or 120)
    milli = pace_in_effect(pace_setting_milli(setting), capacity=capacity, visit_seconds=visit_seconds)
    return round(milli / 1000, 2)


def health(stack: LocalStack) -> dict:
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
    stack: LocalStack,
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
    # Where this step's lines will start: the log's size (parsing every earlier step's lines to
    # find it held them all in memory at once, and a long run's log outgrew the box's 24 GiB).
    log_path = stack.access_log()
    offset = log_path.stat().st_size if log_path.exists() else 0
    started = time.time()
    sampler = None if twin else slot_sampler(redis_url)
    run = run_locust(stack.url, users, seconds, classes, tag or str(users), env, sample_slots=sampler)
    drained = drain(lambda: cluster_in_flight(stack), every=float(env.get("HEARTBEAT_SECONDS", "2")))
    settle_log(stack.access_log())
    every_row, _ = read_log(stack.access_log(), offset)  # integrity: every submit of the run
    # The window opens when the ramp ends, counted from locust's first request (locust takes a
    # few seconds to start on a busy box: counted from its launch, the ramp's tail got in).
    ramp_ends = first_request(stack.access_log(), offset, started) + run["ramp"]
    rows, _ = read_log(stack.access_log(), offset, since=ramp_ends)
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
    return {
        # Locust's own window (after the ramp, before the stop), not wall time with start-up and stop.
        **plateau.step_figures(rows, stats, users, seconds, run["ramp"]),
        "ai": ai_figures(stack, int(env.get("AI_RPM", "10")), float(env.get("AI_WINDOW_SECONDS", "60"))),
        "twin": twin,
        "capacity": capacity,
        "pace_per_s": step_pace(env, capacity),
        "slots": slot_figures(run["slots"]),  # visitors held (adm:active) in the measured window
        "users": users,
        "seconds": round(measured),
        "window_s": seconds,  # asked for: goodput compares between steps of one window length
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
        "box_cpu": run["box_cpu"],
        "integrity": {} if twin else integrity(dsn, every_row, quota),
        "drained": drained,  # the workers had nothing left in flight when Postgres was read
        "ai_metrics": {
            k: ai_counter(after, k) - ai_counter(before, k)
            for k in ("dedup_hits", "cache_hits", "fallbacks", "calls")
        },
        # Recent waits from queueing to an answer (AI or marked fallback), cluster-wide in Redis.
        "ai_wait_p95_s": max(
            (w.get("ai", {}).get("wait_p95_seconds") or 0 for w in after.get("workers", [])), default=0
        ),
    }
