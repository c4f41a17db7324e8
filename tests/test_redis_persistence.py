"""Sessions survive a real Redis crash and restart with the flags `make run` and `make stack` use."""

import os
import shlex
import signal
import subprocess
import time

import redis

from devstack.processes import ROOT, free_port
from tests.support.session_routes import add_session_routes

FLAGS = shlex.split(
    subprocess.run(  # noqa: S603,S607
        ["bash", str(ROOT / "scripts" / "services.sh"), "redis-flags"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "QUIZAPP_REDIS_MAXMEMORY": "64mb"},
    ).stdout
)


def _start_redis(port: int, directory) -> subprocess.Popen:
    proc = subprocess.Popen(  # noqa: S603,S607
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), *FLAGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


def test_sessions_survive_a_redis_crash(make_app, tmp_path):
    assert "--appendonly" in FLAGS and "volatile-lru" in FLAGS
    port = free_port()
    proc = _start_redis(port, tmp_path)
    try:
        app = make_app(CSRF_ENABLED="false", REDIS_URL=f"redis://127.0.0.1:{port}/0")
        add_session_routes(app)
        clients = [app.test_client() for _ in range(20)]
        for client in clients:
            client.post("/_t/remember")
        time.sleep(1.5)  # appendfsync everysec: what is a second old is on disk
        proc.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
        proc.wait(timeout=10)
        proc = _start_redis(port, tmp_path)
        kept = [c.get("/_t/recall").get_json()["answers"] for c in clients]
        assert kept == [{"q1": 2}] * 20
        info = redis.Redis(port=port).info()
        assert info["maxmemory_policy"] == "volatile-lru" and info["maxmemory"] == 64 * 2**20
    finally:
        proc.kill()
        proc.wait(timeout=10)
