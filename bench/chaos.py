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
import signal
import subprocess
import sys
import time
from pathlib import Path

import gevent
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import report
from chaos_load import Load, WriteProbe, first_session_write, lost_writes, window_figures
from environment import STATE, Stack, bench_urls, ensure_database, reset_data
from load_step import ai_counter, health


def restart_instance(stack: Stack, port: int) -> None:
    """Start the killed instance again exactly as the stack started it."""
    stack.run("restart-instance", "--instance-port", str(port))


def redis_pid() -> int | None:
    path = ROOT / "var" / "redis" / "redis.pid"
    return int(path.read_text()) if path.exists() else None


def pg_ctl(*args: str) -> None:
    data = os.environ["QUIZAPP_PGDATA"]
    cmd = ["/usr/local/bin/pg_ctl", "-D", data, *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def run_events(stack: Stack, load: Load, dsn: str, settle: float) -> list[dict]:
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
        port, pid = sorted(stack.masters().items())[0]
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for victim in [pid, *map(int, children)]:
            os.kill(victim, signal.SIGKILL)
        gevent.sleep(3)
        restart_instance(stack, port)
        return f"instance :{port} killed, restarted after 3 s"

    def restart_postgres():
        probe = WriteProbe(stack.url, load)
        # No -o: the restart keeps the last start's options (postmaster.opts), its Unix socket
        # directory (-k) included; "-o -p PORT" alone left the cluster without its socket.
        pg_ctl("-m", "fast", "-w", "restart", "-l", os.environ.get("QUIZAPP_PG_LOG", "/dev/null"))
        # pg_ctl -w returns once the server accepts connections.
        return f"first confirmed write {probe.first_write(time.time())} s after PG accepted connections"

    def session_keys(among: set | None = None) -> set:
        """The session keys in Redis now; with among: which of those keys are still there (the
        load goes on around the restart, so new sessions would inflate a plain count)."""
        client = redis.Redis.from_url(bench_urls()[1])
        deadline = time.time() + 60
        try:
            while True:
                try:
                    if among is None:
                        return set(client.scan_iter(match="s:*", count=1000))
                    names = list(among)
                    pipe = client.pipeline(transaction=False)
                    for name in names:
                        pipe.exists(name)
                    return {name for name, there in zip(names, pipe.execute(), strict=True) if there}
                except redis.BusyLoadingError:  # just restarted: still reading its AOF
                    if time.time() > deadline:
                        raise
                    gevent.sleep(0.1)
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
        kept = session_keys(among=before)  # AOF (scripts/services.sh): sessions come back with Redis
        back = first_session_write(stack.url, time.time())
        return (
            f"first session written {back} s after Redis answered; sessions kept: {len(kept)} of the "
            f"{len(before)} there before the restart"
        )

    def pause_redis():
        pid = redis_pid()
        os.kill(pid, signal.SIGSTOP)
        gevent.sleep(3)
        os.kill(pid, signal.SIGCONT)
        return "SIGSTOP for 3 s"

    def fake_mode(mode):
        def action():
            before = health(stack)
            stack.fake_openai("mode", {"mode": mode})
            gevent.sleep(settle)
            stack.fake_openai("mode", {"mode": "ok"})
            gevent.sleep(settle)  # let jobs caught in the fault reach their deadline
            after = health(stack)
            fallbacks = ai_counter(after, "fallbacks") - ai_counter(before, "fallbacks")
            breaker = {w.get("breaker") for w in after.get("workers", [])}
            return (
                f"fake OpenAI '{mode}' for {settle:.0f} s: {fallbacks} analyses fell back (marked), "
                f"breaker now {'/'.join(sorted(b for b in breaker if b)) or '?'}"
            )

        return action

    def hup_all():
        for pid in stack.masters().values():
            os.kill(pid, signal.SIGHUP)
        return "SIGHUP to every gunicorn master"

    event("kill -9 one worker", kill_worker)
    event("kill an instance (restart after 3 s)", kill_instance)
    if os.environ.get("QUIZAPP_PGDATA"):
        event("restart Postgres", restart_postgres)
    if redis_pid():
        event("restart Redis", restart_redis)
        event("pause Redis 3 s", pause_redis)
    for mode in ("ratelimit", "error500", "hang"):  # the stack runs devstack.fake_openai (no OPENAI_API_KEY)
        event(f"fake OpenAI {mode}", fake_mode(mode))
    event("HUP reload all instances", hup_all)
    return results


def main() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    dsn, redis_url = bench_urls()
    ensure_database(dsn)
    reset_data(dsn, redis_url)
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
    stack = Stack(int(os.environ.get("CHAOS_INSTANCES", "2")), int(os.environ.get("CHAOS_WORKERS", "2")), env)
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
    (STATE / "chaos.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(summary))
    _update_docs(results)
    return 0 if total_lost == 0 else 1


def _update_docs(results: list[dict]) -> None:
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
