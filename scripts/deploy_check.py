#!/usr/bin/env python3
"""`make deploy-check`: follow docs/deploy.md on this machine, against the local Postgres and Redis.

Fills in systemd/quizapp.env.example as an operator would (every change-me value), renders the
units with this checkout in place of /opt/quizapp, then runs what systemd would run: the migrate
unit, one quizapp@PORT instance in production mode (until /readyz is 200 and a page is served),
and the retention unit; stops the instance by pid. Needs DATABASE_URL (a superuser, to create the
app's role with a password) and REDIS_URL, as in var/services.env.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.processes import free_port, spawn_logged  # noqa: E402

SYSTEMD = ROOT / "systemd"
PLACEHOLDER = "change-me"
ROLE = "quizapp_deploy_check"


def render_env(example: str, values: dict[str, str]) -> str:
    """The example with every change-me value replaced; fails naming a placeholder left unfilled."""
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and PLACEHOLDER in value:
            if name not in values:
                raise SystemExit(f"deploy-check: no value for {name} (placeholder in the env example)")
            value = values[name]
            value = f"'{value}'" if "$" in value else value
        lines.append(f"{name}{sep}{value}" if sep else line)
    return "\n".join(lines) + "\n"


def read_env_file(path: Path) -> dict[str, str]:
    """systemd EnvironmentFile syntax as used here: KEY=value, optional single or double quotes."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name.strip()] = value
    return env


def render_unit(name: str, replacements: dict[str, str]) -> str:
    text = (SYSTEMD / name).read_text()
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def unit_settings(text: str, instance: str = "") -> dict[str, list[str]]:
    """[Service] settings with %i and %H expanded (repeatable keys keep every value)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.replace("%i", instance).replace("%H", socket.gethostname())
        settings.setdefault(key, []).append(value)
    return settings


def unit_environment(settings: dict[str, list[str]]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    for env_file in settings.get("EnvironmentFile", []):
        env.update(read_env_file(Path(env_file.lstrip("-"))))
    for assignment in settings.get("Environment", []):
        for pair in shlex.split(assignment):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def run_oneshot(unit_text: str, what: str) -> str:
    settings = unit_settings(unit_text)
    result = subprocess.run(  # noqa: S603 - the unit's own command
        shlex.split(settings["ExecStart"][0]),
        cwd=settings["WorkingDirectory"][0],
        env=unit_environment(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"deploy-check: {what} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return (result.stdout + result.stderr).strip()


def run_daemon_briefly(unit_text: str, log_path: Path, seconds: float = 3.0) -> str:
    """Start a long-running unit (the mailer), check it stays up, stop it with its KillSignal."""
    settings = unit_settings(unit_text)
    command = shlex.split(settings["ExecStart"][0])  # the unit's own ExecStart
    proc = spawn_logged(
        command, log_path, env=unit_environment(settings), cwd=settings["WorkingDirectory"][0]
    )
    time.sleep(seconds)
    if proc.poll() is not None:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise SystemExit(f"deploy-check: the mailer exited with {proc.returncode}:\n{tail}")
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=40)
    return f"quizapp-mailer: up {seconds:.0f} s with the env file, SIGTERM, exit {proc.returncode}"


def prepare_database(admin_url: str) -> str:
    """The guide's step: a role with a password owning its database; returns the app's URL."""
    import psycopg2

    password = secrets.token_urlsafe(24)
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %(role)s", {"role": ROLE})
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(f"{verb} ROLE {ROLE} LOGIN PASSWORD %(pw)s", {"pw": password})  # noqa: S608
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %(db)s", {"db": ROLE})
            if not cur.fetchone():
                cur.execute(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
    finally:
        conn.close()
    parsed = urlparse(admin_url)
    netloc = f"{ROLE}:{password}@{parsed.hostname}:{parsed.port or 5432}"
    return urlunparse(parsed._replace(netloc=netloc, path=f"/{ROLE}"))


def _get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec B310 - loopback only
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def check(work: Path, port: int) -> list[str]:
    admin_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not admin_url or not redis_url:
        raise SystemExit("deploy-check: DATABASE_URL and REDIS_URL must be set (make deploy-check does it)")
    steps = []
    from werkzeug.security import generate_password_hash

    values = {
        "SECRET_KEY": secrets.token_hex(32),
        "ADMIN_PASSWORD_HASH": generate_password_hash(secrets.token_urlsafe(16)),
        "DATABASE_URL": prepare_database(admin_url),
        "PUBLIC_BASE_URL": f"https://127.0.0.1:{port}",
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(12),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        "SMTP_URL": "smtp://127.0.0.1:2525",  # a local relay: plain SMTP is allowed on loopback only
        "OPERATOR_NAME": "Deploy Check Ltd",
        "OPERATOR_EMAIL": "ops@example.org",
        "MAIL_FROM": "Business Model Fit <quiz@example.org>",
    }
    env_file = work / "quizapp.env"
    env_file.write_text(render_env((SYSTEMD / "quizapp.env.example").read_text(), values))
    env_file.chmod(0o640)
    # Redis: the example's URL names the packaged server on 6379; here the local one.
    with env_file.open("a") as handle:
        handle.write(f"REDIS_URL={urlunparse(urlparse(redis_url)._replace(path='/3'))}\n")
    steps.append(f"env file rendered: {env_file} (every change-me filled, role {ROLE} with a password)")
    replacements = {
        "/opt/quizapp": str(ROOT),
        "/etc/quizapp/quizapp.env": str(env_file),
        "/var/lib/quizapp": str(work / "state"),
    }
    (work / "state").mkdir(exist_ok=True)
    units = {
        name: render_unit(name, replacements) for name in os.listdir(SYSTEMD) if name.startswith("quizapp")
    }
    steps.append("migrate: " + run_oneshot(units["quizapp-migrate.service"], "quizapp-migrate.service"))

    settings = unit_settings(units["quizapp@.service"], instance=str(port))
    env = unit_environment(settings)
    assert env["QUIZAPP_ENV"] == "production", "the env example must select production"
    log_path = work / f"quizapp@{port}.log"
    command = shlex.split(settings["ExecStart"][0])  # the unit's own ExecStart
    proc = spawn_logged(command, log_path, env=env, cwd=settings["WorkingDirectory"][0])
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(base + "/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        if status != 200:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"deploy-check: quizapp@{port} never became ready (exit {proc.poll()}):\n{tail}")
        steps.append(f"quizapp@{port}: production mode, /readyz 200 {body.strip()}")
        page, _ = _get(base + "/")
        offline, _ = _get(base + "/pay/test/cs_test_x")
        if page != 200 or offline != 404:
            raise SystemExit(
                f"deploy-check: / answered {page}, the offline checkout {offline} (want 200, 404)"
            )
        steps.append(f"quizapp@{port}: GET / 200, offline test checkout 404 (Stripe mode)")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    steps.append(f"quizapp@{port}: stopped by SIGTERM, exit {proc.returncode}")
    if "quizapp-mailer.service" in units:
        steps.append(run_daemon_briefly(units["quizapp-mailer.service"], work / "mailer.log"))
    steps.append("retention: " + run_oneshot(units["quizapp-retention.service"], "quizapp-retention.service"))
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="instance port (default: a free one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quizapp-deploy-check-") as tmp:
        for step in check(Path(tmp), args.port or free_port()):
            print(f"deploy-check: {step}")
    print("deploy-check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
