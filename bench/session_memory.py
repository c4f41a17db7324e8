"""Redis bytes per active session: one real quiz walk's session, stored 100k times in a private Redis."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.processes import free_port
from devstack.quiz_walk import answer_all, submit
from quizapp import create_app
from quizapp.config import Config


def measure(sessions: int = 100_000) -> dict:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="quizapp-redis-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(50):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "RATELIMIT_ENABLED": "false"}
        app = create_app(Config.from_env(env))
        web = app.test_client()
        answer_all(web, app.extensions["quiz_content"])
        submit(web)
        keys = [k for k in client.keys("s:*")]
        assert len(keys) == 1, keys
        payload = client.get(keys[0])
        ttl = client.ttl(keys[0])
        client.flushdb()
        before = client.info("memory")["used_memory"]
        pipe = client.pipeline(transaction=False)
        for i in range(sessions):
            # Same shape and size as a real session; a fresh sid per user like flask-session's.
            pipe.set(b"s:" + secrets.token_urlsafe(32).encode(), payload, ex=ttl)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        after = client.info("memory")["used_memory"]
        sample = client.randomkey()
        return {
            "sessions": sessions,
            "payload_bytes": len(payload),
            "memory_usage_one_key": client.memory_usage(sample),
            "bytes_per_session": round((after - before) / sessions, 1),
            "used_memory_mb": round(after / 2**20, 1),
        }
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    print(json.dumps(measure(int(os.environ.get("BENCH_SESSIONS", "100000"))), indent=2))
