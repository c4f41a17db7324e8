"""`make stack STACK_PGBOUNCER=1 STACK_REDIS_HA=1`: instances behind PgBouncer and Sentinel, all stopped by pid."""

import json
import os
import subprocess
import sys

import pytest
import requests

from devstack.processes import ROOT, free_port, free_port_block, process_exists

pytestmark = pytest.mark.integration


def test_stack_starts_and_stops_pgbouncer_and_sentinel(tmp_path):
    state = tmp_path / "stack"
    env = {
        **os.environ,
        "STACK_PGBOUNCER": "1",
        "STACK_REDIS_HA": "1",
        "STACK_PGBOUNCER_PORT": str(free_port()),
        "STACK_REDIS_HA_PORT": str(free_port_block(5)),
        "RATELIMIT_ENABLED": "false",
    }
    nginx_port = free_port()
    script = [sys.executable, str(ROOT / "scripts" / "stack.py")]
    options = ["--state-dir", str(state), "--ports", str(free_port()), "--port", str(nginx_port)]
    options += ["--fake-openai-port", str(free_port()), "--door-port", "0"]
    started = subprocess.run(
        [*script, "start", *options], env=env, capture_output=True, text=True, timeout=180
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        instance_env = json.loads((state / "stack.json").read_text())["instance_env"]
        assert f":{env['STACK_PGBOUNCER_PORT']}/" in instance_env["DATABASE_URL"]
        assert instance_env["MIGRATE_DATABASE_URL"] == os.environ["DATABASE_URL"]
        assert len(instance_env["REDIS_SENTINELS"].split(",")) == 3
        ready = requests.get(f"http://127.0.0.1:{nginx_port}/readyz", timeout=10)
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
        pid_files = {path.stem: int(path.read_text()) for path in state.glob("*.pid")}
        pids = list(pid_files.values())
        assert "pgbouncer" in pid_files, pid_files
        assert sum(name.startswith(("redis-", "sentinel-")) for name in pid_files) == 5, pid_files
    finally:
        stopped = subprocess.run(
            [*script, "stop", *options], env=env, capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0, stopped.stderr
    assert not [pid for pid in pids if process_exists(pid)]
