#!/usr/bin/env python3
"""The whole topology on this machine: nginx -> N gunicorn instances -> local Postgres and Redis.

  scripts/stack.py start [--instances 4] [--base-port 8001 | --ports 8001,8002] [--port 8080]
  scripts/stack.py stop | status
With STACK_PGBOUNCER=1 the instances reach Postgres through PgBouncer (transaction pooling); with
STACK_REDIS_HA=1 they use a Redis primary, a replica and three Sentinels (docs/scale-out.md).
Pids, logs and the rendered nginx.conf live in var/stack/ (or --state-dir). Without
OPENAI_API_KEY, tests/fake_openai.py (when present) stands in for the AI provider.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import render_nginx
from pgbouncer import PgBouncer
from redis_ha import RedisHA

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FAKE_OPENAI = ROOT / "tests" / "fake_openai.py"
NGINX = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(check, what: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"stack: {what} exited with {proc.returncode}; see its log")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"stack: {what} did not come up within {timeout:.0f}s; see its log")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # nosec B310 - loopback http only
        return response.status < 500


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _spawn(name: str, command: list[str], state: Path, env: dict) -> subprocess.Popen:
    with open(state / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (state / f"{name}.pid").write_text(str(proc.pid))
    return proc


def _running(state: Path) -> dict[str, int]:
    found = {}
    for pidfile in sorted(state.glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except ValueError:
            continue
        if _alive(pid):
            found[pidfile.stem] = pid
    return found


def _spawn_instance(port: int, state: Path, env: dict) -> subprocess.Popen:
    instance_env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "INSTANCE_NAME": f"stack-{port}",
        "GUNICORN_PIDFILE": "",
    }
    command = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), env.get("STACK_APP", "wsgi:app")]
    return _spawn(f"gunicorn-{port}", command, state, instance_env)


def restart_instance(args) -> int:
    """Start the instance on --instance-port again (after it died or was killed), as `start` did."""
    state = Path(args.state_dir).resolve()
    info = json.loads((state / "stack.json").read_text())
    port = args.instance_port
    if port not in info["ports"]:
        raise SystemExit(f"stack: {port} is not one of this stack's instances {info['ports']}")
    if f"gunicorn-{port}" in _running(state):
        raise SystemExit(f"stack: the instance on {port} is still running")
    proc = _spawn_instance(port, state, {**os.environ, **info["instance_env"]})
    _wait(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), f"gunicorn-{port}", 60, proc)
    print(f"stack: restarted gunicorn-{port} (pid {proc.pid})")
    return 0


def start(args) -> int:
    try:
        return _start(args)
    except SystemExit:
        stop(args)  # leave nothing half-started behind
        raise


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
    procs: list[tuple[str, subprocess.Popen]] = []
    if not env.get("OPENAI_API_KEY") and FAKE_OPENAI.exists():
        fake_port = args.fake_openai_port
        procs.append(
            (
                "fake-openai",
                _spawn(
                    "fake-openai",
                    [
                        str(BIN / "python"),
                        str(FAKE_OPENAI),
                        "--port",
                        str(fake_port),
                        "--latency",
                        env.get("FAKE_OPENAI_LATENCY", "0.8"),
                        "--rpm",
                        env.get("FAKE_OPENAI_RPM", "600"),
                    ],
                    state,
                    env,
                ),
            )
        )
        overrides.update(
            OPENAI_API_KEY="sk-local-fake",  # the fake's dummy key, not a secret
            OPENAI_BASE_URL=f"http://127.0.0.1:{fake_port}/v1",
        )
        env.update(overrides)
        _wait(lambda: _port_open(fake_port), "fake OpenAI", 15, procs[-1][1])
    for port in ports:
        procs.append((f"gunicorn-{port}", _spawn_instance(port, state, env)))
    # The mailer drains email_outbox (to SMTP_URL, or .eml files under var/mail without it).
    procs.append(("mailer", _spawn("mailer", [str(BIN / "python"), "-m", "quizapp.mail.mailer"], state, env)))
    for name, proc in procs:
        if name.startswith("gunicorn-"):
            port = int(name.split("-")[1])
            _wait(lambda p=port: _http_ok(f"http://127.0.0.1:{p}/healthz"), name, 60, proc)
    prefix = state / "nginx"
    conf = render_nginx.write_standalone(
        prefix, ports, f"{args.host}:{args.port}", expected_users=args.expected_users
    )
    nginx = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    check = subprocess.run([*nginx, "-t", "-q"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"stack: nginx -t failed:\n{check.stderr}")
    proc = _spawn("nginx", nginx, state, env)
    _wait(lambda: _http_ok(f"http://127.0.0.1:{args.port}/healthz"), "nginx", 15, proc)
    info = {"url": f"http://{args.host}:{args.port}/", "ports": ports, "instance_env": overrides}
    (state / "stack.json").write_text(json.dumps(info))
    print(
        f"quizapp stack: http://{args.host}:{args.port}/  (nginx least_conn over "
        f"{len(ports)} instances on {','.join(map(str, ports))}; `make stack-stop` stops it)"
    )
    return 0


def _start_shared_services(args, state: Path, overrides: dict) -> None:
    """PgBouncer and/or Redis Sentinel in front of the local Postgres and Redis, when asked for."""
    if os.environ.get("STACK_PGBOUNCER") == "1":
        direct = os.environ["DATABASE_URL"]
        bouncer = PgBouncer(direct, args.pgbouncer_port, state_dir=state / "pgbouncer").start()
        (state / "pgbouncer.pid").write_text(str(bouncer.proc.pid))
        overrides.update(DATABASE_URL=bouncer.url(), MIGRATE_DATABASE_URL=direct)
        print(f"stack: PgBouncer (transaction pooling) on {args.pgbouncer_port}")
    if os.environ.get("STACK_REDIS_HA") == "1":
        ha = RedisHA(state / "redis-ha", args.redis_ha_port).start()
        for name, proc in ha.procs.items():
            (state / f"{name}.pid").write_text(str(proc.pid))
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
    shared = ("fake", "pgbouncer", "redis-", "sentinel-")  # after the instances that use them
    order = sorted(running, key=lambda name: (name != "nginx", name.startswith(shared)))
    for name in order:
        pid = running[name]
        os.kill(pid, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
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
    parser.add_argument("--instances", type=int, default=int(env.get("STACK_INSTANCES", 4)))
    parser.add_argument("--base-port", type=int, default=int(env.get("STACK_BASE_PORT", 8001)))
    parser.add_argument("--ports", default=env.get("STACK_PORTS", ""), help="e.g. 8001,8002")
    parser.add_argument("--port", type=int, default=int(env.get("STACK_PORT", 8080)), help="nginx")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=int(env.get("STACK_WORKERS", 1)))
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


if __name__ == "__main__":
    sys.exit(main())
