"""The app through PgBouncer in transaction pooling mode: no session state, exact counts, direct migrations."""

from __future__ import annotations

import re

import gevent
import psycopg2
import pytest

from devstack.pgbouncer import PgBouncer
from devstack.processes import ROOT, free_port
from quizapp import db
from quizapp.migrate import direct_dsn


@pytest.fixture(scope="module")
def bouncer(migrated_database):
    # Two server connections for many clients: transactions of different clients share them.
    server = PgBouncer(migrated_database, free_port(), pool_size=2).start()
    yield server
    server.stop()


def test_pgbouncer_refuses_session_options_so_the_pool_sends_none(bouncer):
    with pytest.raises(psycopg2.OperationalError, match="options"):
        psycopg2.connect(bouncer.url(), options="-c statement_timeout=1000")


def _show(cur, name):
    cur.execute("SELECT current_setting(%(name)s) AS value", {"name": name})
    return cur.fetchone()["value"]


def test_timeouts_are_per_transaction_and_never_leak_to_the_next_client(bouncer):
    strict = db.ConnectionPool(bouncer.url(), minconn=0, maxconn=4, statement_timeout_ms=150)
    relaxed = db.ConnectionPool(bouncer.url(), minconn=0, maxconn=4, lock_timeout_ms=7000)
    try:
        with pytest.raises(psycopg2.errors.QueryCanceled):
            with db.transaction(strict) as cur:
                cur.execute("SELECT pg_sleep(2)")
        with pytest.raises(psycopg2.errors.QueryCanceled):  # a read: its timeouts ride with it
            db.run_read(lambda cur: cur.execute("SELECT pg_sleep(2)"), pool=strict)
        for _ in range(6):  # a read's read-only flag and timeouts end with it
            assert db.run_read(_show, "statement_timeout", pool=relaxed) == "30s"
            with db.transaction(relaxed) as cur:
                cur.execute("SHOW transaction_read_only")
                assert cur.fetchone()["transaction_read_only"] == "off"
        for _ in range(6):  # whichever server connection PgBouncer hands out
            with db.transaction(relaxed) as cur:
                cur.execute("SHOW statement_timeout")
                assert cur.fetchone()["statement_timeout"] == "30s"
                cur.execute("SHOW lock_timeout")
                assert cur.fetchone()["lock_timeout"] == "7s"
        conn = psycopg2.connect(bouncer.url())
        try:
            with conn.cursor() as cur:  # outside any of the app's transactions: server defaults
                cur.execute("SHOW statement_timeout")
                assert cur.fetchone()[0] == "0"
        finally:
            conn.close()
    finally:
        strict.close()
        relaxed.close()


def test_many_greenlets_through_two_server_connections_lose_no_increment(bouncer, pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS t_bouncer (id int PRIMARY KEY, n int NOT NULL)")
        cur.execute("INSERT INTO t_bouncer VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET n = 0")
    pool = db.ConnectionPool(bouncer.url(), minconn=0, maxconn=40, timeout=60)

    def bump():
        # Row lock: every increment sees the previous one.
        db.run_in_transaction(
            lambda cur: cur.execute("UPDATE t_bouncer SET n = n + 1 WHERE id = 1"), pool=pool
        )

    try:
        jobs = [gevent.spawn(bump) for _ in range(200)]
        gevent.joinall(jobs, raise_error=True)
    finally:
        pool.close()
    with pg_conn.cursor() as cur:
        cur.execute("SELECT n FROM t_bouncer WHERE id = 1")
        assert cur.fetchone()[0] == 200
        cur.execute("DROP TABLE t_bouncer")


def test_migrations_go_straight_to_postgres():
    env = {
        "DATABASE_URL": "postgresql://app@bouncer:6432/q",
        "MIGRATE_DATABASE_URL": "postgresql://pg:5432/q",
    }
    assert direct_dsn(env) == "postgresql://pg:5432/q"
    assert direct_dsn({"DATABASE_URL": "postgresql://pg:5432/q"}) == "postgresql://pg:5432/q"


def test_the_app_holds_no_session_state_or_session_advisory_lock():
    """Transaction pooling forbids SET (without LOCAL), session advisory locks, LISTEN, PREPARE."""
    forbidden = re.compile(
        r"pg_advisory_lock|pg_try_advisory_lock\(|\bLISTEN\b|\bPREPARE\b|options=f?\"-c |"
        r"(?<!LOCAL )\bSET (statement_timeout|lock_timeout|search_path|TIME ZONE)",
        re.IGNORECASE,
    )
    offenders = []
    for path in (ROOT / "quizapp").rglob("*.py"):
        if path.name == "migrate.py":  # connects directly (MIGRATE_DATABASE_URL)
            continue
        offenders += [
            f"{path.name}: {line.strip()}" for line in path.read_text().splitlines() if forbidden.search(line)
        ]
    assert offenders == []
