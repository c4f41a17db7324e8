"""Real Postgres and Redis for every test: migrate once, truncate and flush between tests."""

from __future__ import annotations

import os

import psycopg2
import pytest
import redis
from psycogreen.gevent import patch_psycopg

from devstack.database import truncate_tables
from devstack.fake_openai import FakeOpenAIProcess
from devstack.pgbouncer import PgBouncer
from devstack.processes import free_port
from quizapp import create_app, redis_conn
from quizapp.config import Config
from quizapp.migrate import migrate

patch_psycopg()

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")


def _require_services():
    if not DATABASE_URL or not REDIS_URL:
        pytest.exit("DATABASE_URL and REDIS_URL must be set: run the suite with `make test`", 2)


def pytest_addoption(parser):
    parser.addoption(
        "--through-pgbouncer",
        action="store_true",
        help="point DATABASE_URL (apps and gunicorn) at a PgBouncer in transaction pooling mode",
    )


@pytest.fixture(scope="session", autouse=True)
def migrated_database(request):
    _require_services()
    migrate(DATABASE_URL)  # straight to Postgres: the migration lock is session-level
    if not request.config.getoption("--through-pgbouncer"):
        yield DATABASE_URL
        return
    bouncer = PgBouncer(DATABASE_URL, free_port(), pool_size=10).start()
    os.environ["DATABASE_URL"] = bouncer.url()
    try:
        yield DATABASE_URL
    finally:
        os.environ["DATABASE_URL"] = DATABASE_URL
        bouncer.stop()


@pytest.fixture(autouse=True)
def clean_state(migrated_database):
    truncate_tables(migrated_database)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    yield


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL, decode_responses=False)
    yield client
    client.close()


@pytest.fixture
def pg_conn():
    conn = psycopg2.connect(DATABASE_URL)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def make_app():
    """Build apps with config overrides (env-style strings); close their pools afterwards."""
    apps = []

    def factory(**overrides):
        env = {**os.environ, "QUIZAPP_ENV": "test", **{k: str(v) for k, v in overrides.items()}}
        app = create_app(Config.from_env(env))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["db_pool"].close()
        redis_conn.redis_client(app).close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def fake_openai():
    """A fake OpenAI server process per test module; each test sets the mode and latency it needs."""
    with FakeOpenAIProcess(free_port()) as server:
        yield server
