"""The gevent-aware pool: blocking waits, 503 on exhaustion, recovery, exact transactions."""

import time

import gevent
import psycopg2
import pytest

from quizapp.db import run_in_transaction, transaction


def _add_db_route(app):
    @app.get("/_t/db")
    def db_route():
        with transaction() as cur:
            cur.execute("SELECT 1 AS one")
            return {"one": cur.fetchone()["one"]}


def test_exhausted_pool_gives_503_page_with_retry_after(make_app):
    app = make_app(DB_POOL_MAX=1, DB_POOL_MIN=0, DB_POOL_TIMEOUT=0.3)
    _add_db_route(app)
    pool = app.extensions["db_pool"]
    held = pool.acquire()
    try:
        started = time.monotonic()
        response = app.test_client().get("/_t/db")
        waited = time.monotonic() - started
    finally:
        pool.release(held)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert b"very busy" in response.data and b"Traceback" not in response.data
    assert 0.25 < waited < 3
    assert pool.stats()["timeouts"] == 1
    assert app.test_client().get("/_t/db").status_code == 200


def test_waiters_block_then_proceed_instead_of_failing(make_app):
    app = make_app(DB_POOL_MAX=2, DB_POOL_MIN=0, DB_POOL_TIMEOUT=10)
    pool = app.extensions["db_pool"]

    def slow(cur):
        cur.execute("SELECT pg_sleep(0.2)")
        return 1

    jobs = [gevent.spawn(run_in_transaction, slow, pool=pool) for _ in range(8)]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert [j.value for j in jobs] == [1] * 8
    stats = pool.stats()
    assert stats["size"] <= 2 and stats["in_use"] == 0 and stats["waited"] >= 5
    assert stats["wait_seconds"] > 0


def _sql(pg_conn, *statements):
    """Run statements on the test's own autocommit connection; the first value of the last one's row."""
    with pg_conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
        return cur.fetchone()[0] if cur.description else None


def test_transaction_rolls_back_as_a_unit(app, pg_conn):
    _sql(pg_conn, "CREATE TABLE IF NOT EXISTS t_unit (v int)", "TRUNCATE t_unit")
    with app.app_context(), pytest.raises(RuntimeError):
        with transaction() as cur:
            cur.execute("INSERT INTO t_unit VALUES (1)")
            raise RuntimeError("boom")
    assert _sql(pg_conn, "SELECT count(*) FROM t_unit") == 0
    _sql(pg_conn, "DROP TABLE t_unit")


def test_serialization_failures_are_retried_and_no_write_is_lost(make_app, pg_conn):
    app = make_app(DB_POOL_MAX=10, DB_TX_RETRIES=10)
    _sql(
        pg_conn,
        "CREATE TABLE IF NOT EXISTS t_counter (id int PRIMARY KEY, n int)",
        "TRUNCATE t_counter; INSERT INTO t_counter VALUES (1, 0)",
    )

    def increment(cur):
        cur.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        cur.execute("SELECT n FROM t_counter WHERE id = 1")
        n = cur.fetchone()["n"]
        gevent.sleep(0.01)  # widen the race so the serializable check fires
        cur.execute("UPDATE t_counter SET n = %(n)s WHERE id = 1", {"n": n + 1})

    pool = app.extensions["db_pool"]
    jobs = [gevent.spawn(run_in_transaction, increment, pool=pool) for _ in range(4)]
    gevent.joinall(jobs, timeout=30, raise_error=True)
    assert _sql(pg_conn, "SELECT n FROM t_counter WHERE id = 1") == 4
    _sql(pg_conn, "DROP TABLE t_counter")


def test_pool_recovers_after_backends_are_terminated(make_app, pg_conn):
    app = make_app(DB_POOL_MAX=4, DB_POOL_MIN=4)
    _add_db_route(app)
    pool = app.extensions["db_pool"]
    pool.warm()
    assert pool.stats()["idle"] == 4
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'quizapp' AND pid <> pg_backend_pid()"
        )
        assert cur.fetchone()[0] >= 4
    gevent.sleep(0.1)
    response = app.test_client().get("/_t/db")
    assert response.status_code == 200, response.data
    assert pool.stats()["discarded"] >= 1


def test_statement_timeout_and_session_settings_are_applied(make_app):
    app = make_app(DB_STATEMENT_TIMEOUT_MS=200)
    with app.app_context(), pytest.raises(psycopg2.errors.QueryCanceled):
        with transaction() as cur:
            cur.execute("SHOW lock_timeout")
            assert cur.fetchone()["lock_timeout"] == "5s"
            cur.execute("SHOW idle_in_transaction_session_timeout")
            assert cur.fetchone()["idle_in_transaction_session_timeout"] == "1min"
            cur.execute("SELECT pg_sleep(2)")


def test_statement_timeout_in_a_view_is_a_503_not_a_500(make_app):
    app = make_app(DB_STATEMENT_TIMEOUT_MS=100)

    @app.get("/_t/slow")
    def slow():
        with transaction() as cur:
            cur.execute("SELECT pg_sleep(1)")
        return "never"

    response = app.test_client().get("/_t/slow")
    assert response.status_code == 503
