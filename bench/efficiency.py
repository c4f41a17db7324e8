"""Efficiency ratio, measured in one run: question page vs the app's no-op endpoint vs a bare Flask hello.

Each target runs under the same gunicorn settings (gevent, GUNICORN_WORKERS workers) and is driven by
wrk from the other core, so the ratios compare across machines even when absolute numbers do not.
On a box with two or more CPUs the worker is pinned to the last CPU and wrk to the first
(BENCH_EFFICIENCY_PIN=0: neither); unpinned, the scheduler sometimes ran both on one core while
the other idled, and the same code read 43-54 % from run to run.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.forms import CSRF_TOKEN_RE as CSRF
from devstack.servers import Gunicorn


def wrk(url: str, seconds: int, connections: int, headers: dict | None = None, server=None) -> float:
    """Requests per second; with `server` (a Gunicorn), also records its workers' CPU µs per request
    in CPU_PER_REQUEST[url]: on a shared box that figure moves far less than the rate does."""
    cmd = [*WRK_PIN, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    before = workers_cpu_seconds(server) if server else 0.0
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx answers; the ratio would be meaningless\n{out}")
    if server:
        done = int(re.search(r"(\d+) requests in", out).group(1))
        CPU_PER_REQUEST[url] = (workers_cpu_seconds(server) - before) / max(done, 1) * 1e6
    return float(match.group(1))


CPU_PER_REQUEST: dict[str, float] = {}
PINNED = (os.cpu_count() or 1) > 1 and os.environ.get("BENCH_EFFICIENCY_PIN", "1") != "0"
WORKER_CPU = (os.cpu_count() or 1) - 1 if PINNED else None  # the worker's core (Gunicorn cpu=)
WRK_PIN = ["taskset", "--cpu-list", "0"] if PINNED else []  # wrk on another core
TICKS = os.sysconf("SC_CLK_TCK")


def workers_cpu_seconds(server) -> float:
    """User + system CPU of the instance's worker processes (the master's children), from /proc."""
    total = 0.0
    for pid in Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return total


def question_session(base: str) -> tuple[str, str]:
    """Start a real quiz and return (cookie header, first question path)."""
    http = requests.Session()
    landing = http.get(base + "/", timeout=10)
    token = CSRF.search(landing.text).group(1)
    page = http.post(base + "/start", data={"csrf_token": token}, timeout=10)
    page.raise_for_status()
    path = "/" + page.url.split("://", 1)[1].split("/", 1)[1]
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    return cookie, path


def measure(seconds: int = 10, connections: int = 64, workers: int = 1, rounds: int = 3) -> dict:
    """Median of `rounds` interleaved rounds, so a noisy neighbour hits all three targets alike."""
    samples = [_measure_once(seconds, connections, workers) for _ in range(rounds)]
    results = {
        key: statistics.median(s[key] for s in samples)
        for key in ("bare_hello", "question_page", "noop_healthz")
    }
    results["question_vs_hello"] = statistics.median(s["question_page"] / s["bare_hello"] for s in samples)
    results["question_vs_noop"] = statistics.median(s["question_page"] / s["noop_healthz"] for s in samples)
    # The same ratio from the workers' CPU per request (hello's over the page's): what the rate
    # ratio would be on a quiet box where the worker, not the neighbours, is the bottleneck.
    for key in ("bare_hello", "question_page", "noop_healthz"):
        results[f"{key}_cpu_us"] = round(statistics.median(s[f"{key}_cpu_us"] for s in samples))
    results["question_vs_hello_cpu"] = statistics.median(
        s["bare_hello_cpu_us"] / s["question_page_cpu_us"] for s in samples
    )
    results["settings"] = {
        "workers": workers,
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "worker_cpu": WORKER_CPU,  # None: not pinned
    }
    return results


def _measure_once(seconds: int, connections: int, workers: int) -> dict:
    env = {
        "QUIZAPP_ENV": os.environ.get("QUIZAPP_ENV", "development"),
        # The limiter stays on (its Redis work is part of the cost) but must not refuse wrk's one
        # person on one address.
        "RATELIMIT_DEFAULT": "100000000/minute",
        "RATELIMIT_PERSON_TOTAL": "100000000/minute",
        "RATELIMIT_ADDRESS_PAGES": "100000000/minute",
        "GUNICORN_ACCESS_LOG": "",
    }
    results = {}
    with Gunicorn("bench.hello_app:app", workers=workers, env=env, cpu=WORKER_CPU) as hello:
        wrk(hello.url + "/", 2, connections)  # warm-up
        results["bare_hello"] = wrk(hello.url + "/", seconds, connections, server=hello)
        results["bare_hello_cpu_us"] = CPU_PER_REQUEST[hello.url + "/"]
    with Gunicorn("wsgi:app", workers=workers, env=env, cpu=WORKER_CPU) as app:
        cookie, path = question_session(app.url)
        wrk(app.url + path, 2, connections, {"Cookie": cookie})
        results["question_page"] = wrk(app.url + path, seconds, connections, {"Cookie": cookie}, server=app)
        results["question_page_cpu_us"] = CPU_PER_REQUEST[app.url + path]
        results["noop_healthz"] = wrk(app.url + "/healthz", seconds, connections, server=app)
        results["noop_healthz_cpu_us"] = CPU_PER_REQUEST[app.url + "/healthz"]
    return results


if __name__ == "__main__":
    seconds = int(os.environ.get("BENCH_EFFICIENCY_SECONDS", "10"))
    print(json.dumps(measure(seconds=seconds), indent=2))
