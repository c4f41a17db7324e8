"""The bench's own database, Redis db, state directory and stacks: runs never touch dev or test data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.database import truncate_tables
from devstack.local_stack import LocalStack
from quizapp.migrate import migrate

STATE = ROOT / "var" / "bench"


def interpreter() -> str:
    """Which Python build runs the bench (and the instances, from the same venv): a shared libpython
    (pyenv's default build, no PGO) costs the app and locust a quarter or more of their CPU per page."""
    maps = Path("/proc/self/maps")
    shared = maps.exists() and "libpython3" in maps.read_text()
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return f"{sys.version.split()[0]} {base}, libpython {'shared' if shared else 'linked in'}"


def bench_urls() -> tuple[str, str]:
    """A database and Redis db of the bench's own, so runs never touch development or test data."""
    db = urlparse(os.environ["DATABASE_URL"])
    dsn = urlunparse(db._replace(path="/quizapp_bench"))
    socket = os.environ.get("QUIZAPP_REDIS_SOCKET", "")
    if socket and os.path.exists(socket) and os.environ.get("BENCH_REDIS_TCP") != "1":
        # The local Redis's Unix socket, as the deploy guide advises for a Redis on the same box.
        return dsn, f"unix://{socket}?db=2"
    rd = urlparse(os.environ["REDIS_URL"])
    return dsn, urlunparse(rd._replace(path="/2"))


def ensure_database(dsn: str) -> None:
    admin = psycopg2.connect(urlunparse(urlparse(dsn)._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = 'quizapp_bench'")
        if not cur.fetchone():
            cur.execute("CREATE DATABASE quizapp_bench")
    admin.close()
    migrate(dsn)


def app_env(dsn: str, redis_url: str, *, smoke: bool, quick: bool) -> dict:
    """The instances' environment: the bench's data, the fake OpenAI, the AI budget and pool sizes."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "QUIZAPP_ENV": "development",
        "PAYMENT_PROVIDER": "test",
        "AI_RPM": str(int(os.environ.get("AI_RPM", "10"))),
        "AI_WINDOW_SECONDS": str(
            float(os.environ.get("AI_WINDOW_SECONDS", "20" if smoke or quick else "60"))
        ),
        "FAKE_OPENAI_LATENCY": os.environ.get("FAKE_OPENAI_LATENCY", "1.5"),
        "FAKE_OPENAI_RPM": os.environ.get("FAKE_OPENAI_RPM", "60"),
        "DB_POOL_MAX": os.environ.get("DB_POOL_MAX", "20"),
        # A slot frees when its visitor submits; the app's default bound (120 s) covers a slow visit.
        "ADMISSION_VISIT_SECONDS": os.environ.get("ADMISSION_VISIT_SECONDS", "120"),
        # nginx's access log (request id, timings) is the bench's record; one log line per request is enough.
        "GUNICORN_ACCESS_LOG": os.environ.get("GUNICORN_ACCESS_LOG", ""),
        "BENCH_WEIGHT_FAST": "10" if smoke else os.environ.get("BENCH_WEIGHT_FAST", "0"),
    }
    env.pop("OPENAI_API_KEY", None)
    return env


def reset_data(dsn: str, redis_url: str) -> None:
    truncate_tables(dsn)
    redis.Redis.from_url(redis_url).flushdb()


def door_wanted() -> bool:
    """BENCH_DOOR=1 (default): the app's stacks get the door instance; 0 compares without it."""
    return os.environ.get("BENCH_DOOR", "1") == "1"


class Stack(LocalStack):
    """`make stack` driven with the bench's own database, Redis db, ports and state dir (var/bench/NAME)."""

    def __init__(
        self,
        instances: int,
        workers: int,
        env: dict,
        *,
        app="wsgi:app",
        expected_users=1000,
        name="stack",
        door: bool | None = None,
    ):
        door = door_wanted() if door is None else door
        super().__init__(
            STATE / name, instances, workers, env, app=app, expected_users=expected_users, door=door
        )

    def start(self) -> None:
        """A run's access log starts empty: earlier runs' lines are of no use to it (a day of runs
        left 8 GB in the stack's log)."""
        self.access_log().unlink(missing_ok=True)
        super().start()
