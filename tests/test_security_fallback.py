"""A Redis outage moves rate limiting to in-memory limits (logged, visible) and back, never a 500."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

import pytest
import redis

from devstack.processes import free_port
from quizapp import create_app, redis_conn, security
from quizapp.config import Config
from quizapp.extensions import csrf

pytestmark = pytest.mark.slow


class ThrowawayRedis:
    """A redis-server of our own on a free port, to kill and bring back."""

    # A throwaway Redis of its own (it is killed mid-test): the port/proc/url shape of every local server.
    def __init__(self, port: int, tmp_path):
        self.port = port
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ThrowawayRedis:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)  # an abrupt outage, not a clean shutdown
            self.proc.wait(timeout=10)


def _app_with_limiter_storage(storage_url: str):
    env = {**os.environ, "QUIZAPP_ENV": "test", "REDIS_SOCKET_TIMEOUT": "0.5"}
    settings = Config.from_env(env).as_flask()
    settings["RATELIMIT_STORAGE_URI"] = storage_url  # sessions stay on the suite's Redis
    app = create_app(settings)

    @app.post("/_test/submit")
    def probe_submit():
        return {"ok": True}

    csrf.exempt(probe_submit)
    security.limit_endpoint(app, "probe_submit", "3/minute")
    return app


def test_redis_outage_falls_back_to_memory_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    throwaway = ThrowawayRedis(free_port(), tmp_path).start()
    app = _app_with_limiter_storage(throwaway.url)
    client = app.test_client()
    try:
        assert [client.post("/_test/submit").status_code for _ in range(2)] == [200, 200]
        with app.app_context():
            assert security.limiter_status()["storage"] == "redis"
        counted = redis.Redis.from_url(throwaway.url)
        assert any(b"probe_submit" in key for key in counted.keys())

        throwaway.stop()
        # Counting restarts in memory (per worker): 3 allowed, then refused; nothing fails.
        codes = [client.post("/_test/submit").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        with app.app_context():
            assert security.limiter_status() == {
                **security.limiter_status(),
                "storage": "memory-fallback",
                "fallback": True,
            }
        assert any(r.getMessage() == "ratelimit.storage_fallback" for r in caplog.records)
        assert client.get("/healthz").status_code == 200

        throwaway.start()
        # Flask-Limiter re-probes the storage with exponential backoff (1, 2, 4... seconds).
        deadline = time.monotonic() + 40
        status = "memory-fallback"
        while status != "redis" and time.monotonic() < deadline:
            assert client.post("/_test/submit").status_code in (200, 429)
            with app.app_context():
                status = security.limiter_status()["storage"]
            time.sleep(0.25)
        assert status == "redis"
        assert any(r.getMessage() == "ratelimit.storage_recovered" for r in caplog.records)
        # Back on Redis (restarted empty): a fresh budget counted in Redis again.
        counted.flushdb()
        assert [client.post("/_test/submit").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert any(b"probe_submit" in key for key in counted.keys())
        counted.close()
    finally:
        throwaway.stop()
        app.extensions["db_pool"].close()
        redis_conn.redis_client(app).close()


def test_limiter_storage_down_from_the_start_serves_requests(make_app):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = _app_with_limiter_storage(dead)
    try:
        client = app.test_client()
        codes = [client.post("/_test/submit").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        with app.app_context():
            assert security.limiter_status()["storage"] == "memory-fallback"
    finally:
        app.extensions["db_pool"].close()
        redis_conn.redis_client(app).close()
