"""A fresh clone in a 0700 folder starts its own services, migrates and serves (as root and not)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from devstack.processes import ROOT, free_port, wait_http

# The suite's own user: as root, Postgres runs as `postgres`, which cannot enter the 0700 folder.
# QUIZAPP_NEWCOMER_USERS=root,nobody also runs the services as an ordinary user (slower: manual).
USERS = os.environ.get("QUIZAPP_NEWCOMER_USERS", "root" if os.geteuid() == 0 else "self").split(",")
# The clone must not inherit this suite's services: it starts its own, as a newcomer's would.
DROPPED = ("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "TEST_REDIS_URL", "GEVENT")


def _as(user: str, command: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user == "nobody" else command


def _env_file(path: Path) -> dict:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


@pytest.mark.integration
@pytest.mark.parametrize("user", USERS)
def test_a_clone_in_a_0700_folder_starts_migrates_and_serves(user):
    folder = Path(tempfile.mkdtemp(prefix="quizapp-newcomer-"))  # mode 0700
    clone = folder / "quizapp"
    base = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED)}
    base.update(QUIZAPP_PG_PORT=str(free_port()), QUIZAPP_REDIS_PORT=str(free_port()))
    services = ["bash", "scripts/services.sh"]
    gunicorn = None
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)  # noqa: S603,S607
        if user == "nobody":
            shutil.chown(folder, "nobody")
            subprocess.run(["chown", "-R", "nobody", str(folder)], check=True, timeout=60)  # noqa: S603,S607
        assert folder.stat().st_mode & 0o777 == 0o700
        started = subprocess.run(  # noqa: S603
            _as(user, [*services, "start"]), cwd=clone, env=base, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stderr
        assert "could not change directory" not in started.stderr
        env = {**base, **_env_file(clone / "var" / "services.env"), "QUIZAPP_ENV": "development"}
        migrated = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "quizapp.migrate"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrated.returncode == 0 and "applied" in migrated.stdout + migrated.stderr, migrated.stderr
        port = int(
            subprocess.run(
                _as(user, [*services, "app-port"]),
                cwd=clone,
                env=base,
                capture_output=True,  # noqa: S603
                text=True,
                check=True,
                timeout=30,
            ).stdout
        )
        env.update(GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1", GUNICORN_ACCESS_LOG="")
        gunicorn = subprocess.Popen(  # noqa: S603
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=clone,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=90, proc=gunicorn)
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        if gunicorn is not None and gunicorn.poll() is None:
            os.killpg(gunicorn.pid, signal.SIGTERM)
            gunicorn.wait(timeout=40)
        if clone.exists():
            subprocess.run(_as(user, [*services, "stop"]), cwd=clone, env=base, timeout=120, check=False)  # noqa: S603
            pg_home = clone / "var" / "pg"
            if pg_home.is_symlink():  # the cluster went to /var/tmp: the checkout was not traversable
                shutil.rmtree(os.readlink(pg_home), ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
