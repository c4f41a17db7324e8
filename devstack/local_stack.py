"""`make stack`: the whole topology on this machine, kept running after this command returns.

  python -m devstack.local_stack start [--instances 4] [--base-port 8001 | --ports 8001,8002] [--port 8080]
      [--door-port 8000 | --door-port 0]
  python -m devstack.local_stack stop | status | restart-instance --instance-port P
(scripts/stack.py is the same command.) nginx -> N gunicorn instances (devstack.stack.Stack) -> local
Postgres and Redis, plus the door (one more instance, 1 worker, niced; STACK_DOOR_PORT=0: none) for
visitors without an admission pass; with STACK_PGBOUNCER=1 through PgBouncer (transaction pooling), with
STACK_REDIS_HA=1 on a Redis primary, a replica and three Sentinels (docs/scale-out.md). Each pool
instance is pinned to a CPU in turn (STACK_PIN_CPUS=0: not), as the deploy guide's CPUAffinity=. Without
OPENAI_API_KEY, devstack.fake_openai stands in for the AI provider. Pids, logs and the rendered
nginx.conf live in var/stack/ (or --state-dir); `LocalStack` drives it from Python (the bench).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import redis

from devstack.fake_openai import FakeOpenAIProcess
from devstack.mail import start_mailer
from devstack.nginx import render_nginx
from devstack.pgbouncer import PgBouncer
from devstack.processes import ROOT, free_port, process_exists, rank_session, wait_http
from devstack.redis_ha import RedisHA
from devstack.stack import DOOR_NICE, EDGE_NICE, Stack

# Stopped after the instances that use them.
SHARED = ("fake", "pgbouncer", "redis-", "sentinel-")


def _running(state: Path) -> dict[str, int]:
    found = {}
    for pidfile in sorted(state.glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except ValueError:
            continue
        if process_exists(pid):
            found[pidfile.stem] = pid
    return found


def _stack(state: Path, env: dict, **options) -> Stack:
    """The instances (and nginx) as `make stack` runs them: plain gunicorn, named stack-PORT."""
    return Stack(
        state,
        workers=int(env.get("GUNICORN_WORKERS", "1")),
        app_path=env.get("STACK_APP", "wsgi:app"),
        env={**env, "GUNICORN_PIDFILE": ""},
        socket_activated=False,
        instance_prefix="stack",
        access_log=env.get("GUNICORN_ACCESS_LOG", "-"),
        defaults={},
        unix_sockets=env.get("STACK_UNIX_SOCKETS", "1") == "1",
        door_nice=int(env.get("STACK_DOOR_NICE", DOOR_NICE)),
        edge_nice=int(env.get("STACK_EDGE_NICE", EDGE_NICE)),
        pin_cpus=env.get("STACK_PIN_CPUS", "1") == "1",
        **options,
    )


def door_wanted(env: dict, door_port: int) -> bool:
    """A door only helps the waiting room: none without admission (it would get every visitor)."""
    admission = env.get("ADMISSION_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
    return door_port > 0 and admission


def restart_instance(args) -> int:
    """Start the instance on --instance-port again (after it died or was killed), as `start` did."""
    state = Path(args.state_dir).resolve()
    info = json.loads((state / "stack.json").read_text())
    port = args.instance_port
    door = port == info.get("door_port")
    if port not in info["ports"] and not door:
        raise SystemExit(f"stack: {port} is not one of this stack's instances {info['ports']}")
    name = f"door-{port}" if door else f"gunicorn-{port}"
    if name in _running(state):
        raise SystemExit(f"stack: the instance on {port} is still running")
    cpu_of = {int(p): cpu for p, cpu in info.get("cpus", {}).items()}  # the CPU it had, if pinned
    stack = _stack(state, {**os.environ, **info["instance_env"]}, ports=[port], cpu_of=cpu_of)
    instance = stack.door_gunicorn(port, nice=stack.door_nice) if door else stack.instances[0]
    instance.start(timeout=60)
    (state / f"{name}.pid").write_text(str(instance.proc.pid))
    print(f"stack: restarted {name} (pid {instance.proc.pid})")
    return 0


def start(args) -> int:
    try:
        return _start(args)
    except (SystemExit, RuntimeError) as exc:
        stop(args)  # leave nothing half-started behind
        raise SystemExit(exc if isinstance(exc, SystemExit) else f"stack: {exc}") from None


def _start(args) -> int:
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    if _running(state):
        print(f"stack: already running ({', '.join(_running(state))}); `make stack-stop` first")
        return 1
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            raise SystemExit(f"stack: {name} is not set (run through `make stack`)")
    ports = (
        render_nginx.parse_ports(args.ports)
        if args.ports
        else [args.base_port + i for i in range(args.instances)]
    )
    # What every instance gets on top of the caller's environment (kept for restart-instance).
    overrides = {
        "GUNICORN_WORKERS": str(args.workers),
        # Behind this nginx: believe its X-Forwarded-For, so limits count real clients.
        "TRUSTED_PROXY_HOPS": "1",
        "GUNICORN_ACCESS_LOG": os.environ.get("GUNICORN_ACCESS_LOG", "-"),
        "STACK_APP": args.app,
    }
    _start_shared_services(args, state, overrides)
    env = {**os.environ, **overrides}
    _rank_local_redis(env.get("REDIS_URL", ""), int(env.get("STACK_EDGE_NICE", EDGE_NICE)))
    if not env.get("OPENAI_API_KEY"):
        fake = FakeOpenAIProcess(
            args.fake_openai_port,
            latency=env.get("FAKE_OPENAI_LATENCY", "0.8"),
            rpm=env.get("FAKE_OPENAI_RPM", "600"),
            log_path=state / "fake-openai.log",
        )
        _write_pid(state, "fake-openai", fake.start().proc)
        overrides.update(
            OPENAI_API_KEY="sk-local-fake",  # the fake's dummy key, not a secret
            OPENAI_BASE_URL=fake.base_url,
        )
        env.update(overrides)
    door = door_wanted(env, args.door_port)
    stack = _stack(
        state,
        env,
        ports=ports,
        nginx_port=args.port,
        host=args.host,
        expected_users=args.expected_users,
        door=door,
        door_port=args.door_port if door else None,
    )
    for instance in stack.instances:
        _write_pid(state, f"gunicorn-{instance.port}", instance.launch().proc)
    if stack.door:
        _write_pid(state, f"door-{stack.door.port}", stack.door.launch().proc)
    # The mailer drains email_outbox (to SMTP_URL, or .eml files under var/mail without it).
    _write_pid(state, "mailer", start_mailer(state, "mailer", env))
    for instance in stack.servers:
        instance.wait_ready(timeout=60)
    stack.nginx.render()
    stack.nginx.check()
    _write_pid(state, "nginx", stack.nginx.start().proc)
    wait_http(f"http://127.0.0.1:{args.port}/healthz", timeout=15, proc=stack.nginx.proc)
    info = {"url": f"http://{args.host}:{args.port}/", "ports": ports, "instance_env": overrides}
    info["door_port"] = stack.door.port if stack.door else None
    info["cpus"] = stack.cpu_of
    (state / "stack.json").write_text(json.dumps(info))
    door_note = f", the door on {stack.door.port}" if stack.door else ""
    print(
        f"quizapp stack: http://{args.host}:{args.port}/  (nginx least_conn over "
        f"{len(ports)} instances on {','.join(map(str, ports))}{door_note}; `make stack-stop` stops it)"
    )
    return 0


def _write_pid(state: Path, name: str, proc: subprocess.Popen) -> None:
    (state / f"{name}.pid").write_text(str(proc.pid))


def _rank_local_redis(redis_url: str, nice: int) -> None:
    """Rank the local Redis (make services) as nginx is ranked: every page, the waiting room's
    too, waits for one round trip. Left as it is when Redis is not on this machine or we may not."""
    try:
        pid = int(redis.Redis.from_url(redis_url, socket_timeout=2).info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return
    if process_exists(pid):
        rank_session(pid, nice)


def _start_shared_services(args, state: Path, overrides: dict) -> None:
    """PgBouncer and/or Redis Sentinel in front of the local Postgres and Redis, when asked for."""
    if os.environ.get("STACK_PGBOUNCER") == "1":
        direct = os.environ["DATABASE_URL"]
        bouncer = PgBouncer(direct, args.pgbouncer_port, state_dir=state / "pgbouncer").start()
        _write_pid(state, "pgbouncer", bouncer.proc)
        overrides.update(DATABASE_URL=bouncer.url(), MIGRATE_DATABASE_URL=direct)
        print(f"stack: PgBouncer (transaction pooling) on {args.pgbouncer_port}")
    if os.environ.get("STACK_REDIS_HA") == "1":
        ha = RedisHA(state / "redis-ha", args.redis_ha_port).start()
        for name, proc in ha.procs.items():
            _write_pid(state, name, proc)
        db = urlparse(os.environ["REDIS_URL"]).path.lstrip("/") or "0"
        overrides.update(
            REDIS_SENTINELS=ha.sentinels,
            REDIS_SENTINEL_SERVICE=ha.service,
            REDIS_URL=f"redis://127.0.0.1:{ha.base_port}/{db}",
            REDIS_WAIT_REPLICAS="1",
        )
        print(f"stack: Redis primary {ha.base_port}, replica {ha.base_port + 1}, Sentinels {ha.sentinels}")


def stop(args) -> int:
    state = Path(args.state_dir).resolve()
    running = _running(state)
    # nginx first, so no request reaches an instance that is going away.
    order = sorted(running, key=lambda name: (name != "nginx", name.startswith(SHARED)))
    for name in order:
        pid = running[name]
        os.kill(pid, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        deadline = time.monotonic() + 30
        while process_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_exists(pid):
            os.kill(pid, signal.SIGKILL)
        print(f"stack: stopped {name} (pid {pid})")
    for pidfile in state.glob("*.pid"):
        pidfile.unlink()
    return 0


def status(args) -> int:
    state = Path(args.state_dir).resolve()
    running = _running(state)
    for name, pid in running.items():
        print(f"{name}: pid {pid}")
    info = state / "stack.json"
    if running and info.exists():
        print("url:", json.loads(info.read_text())["url"])
    if not running:
        print("stack: not running")
    return 0 if running else 3


def main(argv=None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status", "restart-instance"))
    parser.add_argument("--instance-port", type=int, help="restart-instance: the instance's port")
    parser.add_argument(
        "--instances", type=int, default=int(env.get("STACK_INSTANCES", len(os.sched_getaffinity(0))))
    )
    parser.add_argument("--base-port", type=int, default=int(env.get("STACK_BASE_PORT", 8001)))
    parser.add_argument("--ports", default=env.get("STACK_PORTS", ""), help="e.g. 8001,8002")
    parser.add_argument("--port", type=int, default=int(env.get("STACK_PORT", 8080)), help="nginx")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=int(env.get("STACK_WORKERS", 1)))
    parser.add_argument(
        "--door-port",
        type=int,
        default=int(env.get("STACK_DOOR_PORT", 8000)),
        help="the door instance (visitors without an admission pass); 0: no door",
    )
    parser.add_argument(
        "--fake-openai-port",
        type=int,
        default=int(env.get("STACK_FAKE_OPENAI_PORT", 8900)),
    )
    parser.add_argument(
        "--expected-users",
        type=int,
        default=int(env.get("NGINX_EXPECTED_USERS", render_nginx.DEFAULT_EXPECTED_USERS)),
        help="size nginx's connections and open-files limit for this many concurrent users",
    )
    parser.add_argument("--app", default=env.get("STACK_APP", "wsgi:app"), help="WSGI app of the instances")
    parser.add_argument("--pgbouncer-port", type=int, default=int(env.get("STACK_PGBOUNCER_PORT", 6432)))
    parser.add_argument("--redis-ha-port", type=int, default=int(env.get("STACK_REDIS_HA_PORT", 26400)))
    parser.add_argument("--state-dir", default=env.get("STACK_STATE_DIR", str(ROOT / "var" / "stack")))
    args = parser.parse_args(argv)
    actions = {"start": start, "stop": stop, "status": status, "restart-instance": restart_instance}
    return actions[args.action](args)


class LocalStack:
    """A `make stack` in its own state directory, driven from Python (the bench): its own ports,
    stopped by the pids it keeps there."""

    def __init__(
        self,
        state: Path,
        instances: int,
        workers: int,
        env: dict,
        *,
        app="wsgi:app",
        expected_users=1000,
        door=False,
    ):
        self.instances = instances
        self.door_port = free_port() if door else 0
        self.workers = workers
        self.app = app
        self.expected_users = expected_users
        self.port = free_port()
        self.base_port = free_port()
        self.fake_port = free_port()
        self.state = Path(state)
        self.env = env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, action: str, *extra: str) -> None:
        command = [
            sys.executable,
            "-m",
            "devstack.local_stack",
            action,
            "--state-dir",
            str(self.state),
            *extra,
        ]
        subprocess.run(command, env=self.env, check=True, cwd=ROOT, timeout=180)

    def start(self) -> None:
        self.stop()
        avoid = {self.port, self.fake_port, self.door_port}
        ports = ",".join(str(p) for p in distinct_ports(self.instances, avoid=avoid))
        options = ["--ports", ports, "--port", str(self.port), "--workers", str(self.workers)]
        options += ["--door-port", str(self.door_port)]
        options += ["--fake-openai-port", str(self.fake_port), "--app", self.app]
        self.run("start", *options, "--expected-users", str(self.expected_users))

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

    def masters(self) -> dict[int, int]:
        """Each instance's port and gunicorn master pid."""
        return {int(p.stem.split("-")[1]): int(p.read_text()) for p in self.state.glob("gunicorn-*.pid")}

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


if __name__ == "__main__":
    sys.exit(main())
