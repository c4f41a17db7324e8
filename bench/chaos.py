"""`make chaos`: steady quiz traffic through the stack while parts fail; failures, recovery, lost writes.

Events, one after another, each in its own window: kill -9 a worker, kill an instance (and start it
again), restart Postgres, restart Redis, pause Redis, the fake OpenAI answering 429 / 500 / hanging,
and a HUP reload of every gunicorn. A write is "lost" when a client saw its submit confirmed (303 to
a result id) and that result is not in Postgres afterwards.
"""

from gevent import monkey

monkey.patch_all()

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gevent
import psycopg2
import redis
import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as bench

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHOICE = re.compile(r'name="choice" value="(\d+)"')
RESULT = re.compile(r"/r/([A-Za-z0-9_-]{16,})$")


class SourceAdapter(HTTPAdapter):
    """Bind every connection of one simulated client to its own loopback address."""

    def __init__(self, source_ip: str):
        self.source_ip = source_ip
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


class Load:
    """N clients taking the quiz over and over with a short think time; every request is recorded."""

    def __init__(self, base: str, clients: int, think: float = 0.3):
        self.base = base
        self.clients = clients
        self.think = think
        self.records: list[tuple[float, str, int]] = []  # (time, label, status; 0 = no answer)
        self.confirmed: list[tuple[float, str]] = []
        self.running = True
        self.jobs: list[gevent.Greenlet] = []

    def start(self):
        self.jobs = [gevent.spawn(self._client, i) for i in range(self.clients)]

    def stop(self):
        self.running = False
        gevent.joinall(self.jobs, timeout=20)
        gevent.killall(self.jobs, timeout=5)

    def _get(self, http, label, path, **kw):
        return self._call(http.get, label, path, **kw)

    def _post(self, http, label, path, **kw):
        return self._call(http.post, label, path, **kw)

    def _call(self, method, label, path, **kw):
        try:
            response = method(self.base + path, timeout=15, **kw)
        except requests.RequestException:
            self.records.append((time.time(), label, 0))
            return None
        self.records.append((time.time(), label, response.status_code))
        return response

    def _client(self, index: int):
        n = 0
        while self.running:
            n += 1
            http = requests.Session()
            ip = f"127.2.{(index * 97 + n) % 250}.{index % 250 + 2}"
            http.mount("http://", SourceAdapter(ip))
            self._flow(http)
            http.close()

    def _flow(self, http):
        page = self._get(http, "landing", "/")
        token = _first(CSRF, page)
        if not token:
            return gevent.sleep(self.think)
        page = self._post(http, "start", "/start", data={"csrf_token": token})
        for _ in range(30):
            if page is None or page.status_code != 200 or "/q/" not in page.url:
                break
            gevent.sleep(self.think * random.random())  # nosec B311 - think time
            choices = CHOICE.findall(page.text) or ["0"]
            path = "/" + page.url.split("/", 3)[3]
            page = self._post(
                http,
                "question",
                path,
                data={"csrf_token": _first(CSRF, page), "choice": random.choice(choices)},  # nosec B311
            )
        if page is None or "/review" not in page.url:
            return gevent.sleep(self.think)
        response = self._post(http, "submit", "/submit", data={"csrf_token": _first(CSRF, page)})
        if response is not None and response.status_code == 200:
            match = RESULT.search(response.url)
            if match:
                self.confirmed.append((time.time(), match.group(1)))


def _first(pattern, response):
    if response is None:
        return ""
    match = pattern.search(response.text or "")
    return match.group(1) if match else ""


def window_figures(load: Load, since: float, until: float, event_at: float) -> dict:
    rows = [r for r in load.records if since <= r[0] < until]
    failed = [r for r in rows if r[2] == 0 or r[2] >= 500]
    last_failure = max((r[0] for r in failed), default=None)
    return {
        "requests": len(rows),
        "failed": len(failed),
        "status_5xx": sum(1 for r in rows if r[2] >= 500),
        "recovery_s": round(last_failure - event_at, 2) if last_failure else 0.0,
    }


def lost_writes(dsn: str, confirmed: list[tuple[float, str]]) -> int:
    if not confirmed:
        return 0
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM quiz_attempts WHERE public_id = ANY(%(ids)s)",
            {"ids": [c[1] for c in confirmed]},
        )
        found = cur.fetchone()[0]
    conn.close()
    return len({c[1] for c in confirmed}) - found


class WriteProbe:
    """Quizzes answered up to the review page, ready to submit the moment a dependency is back."""

    def __init__(self, base: str, load: Load, count: int = 5):
        self.base = base
        self.load = load
        self.ready: list[tuple[requests.Session, str]] = []
        for i in range(count):
            http = requests.Session()
            http.mount("http://", SourceAdapter(f"127.3.{len(load.confirmed) % 250}.{i + 2}"))
            page = http.get(base + "/", timeout=10)
            page = http.post(base + "/start", data={"csrf_token": _first(CSRF, page)}, timeout=10)
            for _ in range(40):  # bounded: one page per question
                if page.status_code != 200 or "/q/" not in page.url:
                    break
                path = "/" + page.url.split("/", 3)[3]
                data = {"csrf_token": _first(CSRF, page), "choice": (CHOICE.findall(page.text) or ["0"])[0]}
                page = http.post(self.base + path, data=data, timeout=10)
            if "/review" not in page.url:
                raise RuntimeError(
                    f"write probe could not reach the review page: {page.status_code} {page.url}"
                )
            self.ready.append((http, _first(CSRF, page)))

    def first_write(self, since: float, timeout: float = 20.0) -> float | None:
        """Submit until one is confirmed; seconds from `since` to that confirmation."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for http, token in self.ready:
                try:
                    response = http.post(self.base + "/submit", data={"csrf_token": token}, timeout=5)
                except requests.RequestException:
                    continue
                match = RESULT.search(response.url) if response.status_code == 200 else None
                if match:
                    self.load.confirmed.append((time.time(), match.group(1)))
                    return round(time.time() - since, 3)
            gevent.sleep(0.02)
        return None


def first_session_write(base: str, since: float, timeout: float = 20.0) -> float | None:
    """A new visitor starting a quiz (a session written to Redis); seconds from `since` to success."""
    deadline = time.time() + timeout
    n = 0
    while time.time() < deadline:
        n += 1
        http = requests.Session()
        http.mount("http://", SourceAdapter(f"127.4.{n // 250}.{n % 250 + 2}"))
        try:
            page = http.get(base + "/", timeout=5)
            token = _first(CSRF, page)
            if token and http.post(base + "/start", data={"csrf_token": token}, timeout=5).status_code == 200:
                return round(time.time() - since, 3)
        except requests.RequestException:
            pass
        gevent.sleep(0.02)
    return None


def restart_instance(stack: bench.Stack, port: int) -> None:
    """Start the killed instance again exactly as the stack started it."""
    stack.run("restart-instance", "--instance-port", str(port))


def masters(stack: bench.Stack) -> dict[int, int]:
    found = {}
    for pidfile in stack.state.glob("gunicorn-*.pid"):
        found[int(pidfile.stem.split("-")[1])] = int(pidfile.read_text())
    return found


def redis_pid() -> int | None:
    path = ROOT / "var" / "redis" / "redis.pid"
    return int(path.read_text()) if path.exists() else None


def pg_ctl(*args: str) -> None:
    data = os.environ["QUIZAPP_PGDATA"]
    cmd = ["/usr/local/bin/pg_ctl", "-D", data, *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def run_events(stack: bench.Stack, load: Load, dsn: str, settle: float) -> list[dict]:
    results = []

    def event(name, action):
        gevent.sleep(settle / 2)
        print(f"chaos: {name} ...", flush=True)
        start = time.time()
        note = action() or ""
        gevent.sleep(settle)
        figures = window_figures(load, start, time.time(), start)
        figures.update(event=name, lost_writes=lost_writes(dsn, load.confirmed), note=note)
        print(json.dumps(figures))
        results.append(figures)

    def kill_worker():
        workers = stack.worker_pids()
        os.kill(random.choice(workers), signal.SIGKILL)  # nosec B311

    def kill_instance():
        port, pid = sorted(masters(stack).items())[0]
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for victim in [pid, *map(int, children)]:
            os.kill(victim, signal.SIGKILL)
        gevent.sleep(3)
        restart_instance(stack, port)
        return f"instance :{port} killed, restarted after 3 s"

    def restart_postgres():
        probe = WriteProbe(stack.url, load)
        pg_ctl(
            "-m",
            "fast",
            "-w",
            "restart",
            "-o",
            f"-p {os.environ['QUIZAPP_PG_PORT']}",
            "-l",
            os.environ.get("QUIZAPP_PG_LOG", "/dev/null"),
        )
        # pg_ctl -w returns once the server accepts connections.
        return f"first confirmed write {probe.first_write(time.time())} s after PG accepted connections"

    def session_keys() -> int:
        client = redis.Redis.from_url(bench.bench_urls()[1])
        try:
            return sum(1 for _ in client.scan_iter(match="s:*", count=1000))
        finally:
            client.close()

    def restart_redis():
        before = session_keys()
        pid = redis_pid()
        os.kill(pid, signal.SIGTERM)
        while Path(f"/proc/{pid}").exists():
            gevent.sleep(0.05)
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "services.sh"), "start"],
            check=True,
            capture_output=True,
            env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        )
        kept = session_keys()  # AOF (scripts/services.sh): the sessions come back with Redis
        back = first_session_write(stack.url, time.time())
        return f"first session written {back} s after Redis answered; sessions kept: {kept} of {before}"

    def pause_redis():
        pid = redis_pid()
        os.kill(pid, signal.SIGSTOP)
        gevent.sleep(3)
        os.kill(pid, signal.SIGCONT)
        return "SIGSTOP for 3 s"

    def fake_mode(mode):
        def action():
            before = bench.health(stack)
            stack.fake_openai("mode", {"mode": mode})
            gevent.sleep(settle)
            stack.fake_openai("mode", {"mode": "ok"})
            gevent.sleep(settle)  # let jobs caught in the fault reach their deadline
            after = bench.health(stack)
            fallbacks = bench.ai_counter(after, "fallbacks") - bench.ai_counter(before, "fallbacks")
            breaker = {w.get("breaker") for w in after.get("workers", [])}
            return (
                f"fake OpenAI '{mode}' for {settle:.0f} s: {fallbacks} analyses fell back (marked), "
                f"breaker now {'/'.join(sorted(b for b in breaker if b)) or '?'}"
            )

        return action

    def hup_all():
        for pid in masters(stack).values():
            os.kill(pid, signal.SIGHUP)
        return "SIGHUP to every gunicorn master"

    event("kill -9 one worker", kill_worker)
    event("kill an instance (restart after 3 s)", kill_instance)
    if os.environ.get("QUIZAPP_PGDATA"):
        event("restart Postgres", restart_postgres)
    if redis_pid():
        event("restart Redis", restart_redis)
        event("pause Redis 3 s", pause_redis)
    if (ROOT / "tests" / "fake_openai.py").exists():
        for mode in ("ratelimit", "error500", "hang"):
            event(f"fake OpenAI {mode}", fake_mode(mode))
    event("HUP reload all instances", hup_all)
    return results


def main() -> int:
    bench.STATE.mkdir(parents=True, exist_ok=True)
    dsn, redis_url = bench.bench_urls()
    bench.ensure_database(dsn)
    bench.reset_data(dsn, redis_url)
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "QUIZAPP_ENV": "development",
        "PAYMENT_PROVIDER": "test",
        "AI_WINDOW_SECONDS": "10",
        "OPENAI_TIMEOUT": "3",
        "AI_DEADLINE_SECONDS": "10",
        "FAKE_OPENAI_LATENCY": "0.5",
    }
    env.pop("OPENAI_API_KEY", None)
    quick = os.environ.get("BENCH_QUICK") == "1"
    stack = bench.Stack(
        int(os.environ.get("CHAOS_INSTANCES", "2")), int(os.environ.get("CHAOS_WORKERS", "2")), env
    )
    settle = 4.0 if quick else 8.0
    results = []
    stack.start()
    load = Load(stack.url, clients=int(os.environ.get("CHAOS_CLIENTS", "20")))
    try:
        load.start()
        gevent.sleep(settle)
        results = run_events(stack, load, dsn, settle)
    finally:
        load.stop()
        stack.stop()
    total_lost = lost_writes(dsn, load.confirmed)
    summary = {
        "event": "whole run",
        "requests": len(load.records),
        "failed": sum(1 for r in load.records if r[2] == 0 or r[2] >= 500),
        "status_5xx": sum(1 for r in load.records if r[2] >= 500),
        "recovery_s": "",
        "lost_writes": total_lost,
        "note": f"{len(load.confirmed)} confirmed writes",
    }
    results.append(summary)
    (bench.STATE / "chaos.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(summary))
    _update_docs(results)
    return 0 if total_lost == 0 else 1


def _update_docs(results: list[dict]) -> None:
    import report

    docs = ROOT / "docs" / "benchmarks.md"
    table = "\n".join(report.chaos_table(results))
    text = docs.read_text() if docs.exists() else "# Benchmarks\n\n"
    marker = "## Chaos (`make chaos`)"
    if marker in text:
        head, _, rest = text.partition(marker)
        tail = rest.split("\n## ", 1)
        text = head + table + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + table
    docs.parent.mkdir(exist_ok=True)
    docs.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
