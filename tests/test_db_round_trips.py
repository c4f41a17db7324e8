"""Postgres round trips, counted on the wire: a read is one, a write its statements plus COMMIT; the
per-transaction timeouts still fire, a read cannot write, and a lost connection is retried only when
no commit can have happened."""

from __future__ import annotations

from urllib.parse import urlparse

import psycopg2
import pytest

from devstack.pg_wire_counter import PgWireCounter
from devstack.round_trip_walk import walk
from quizapp import db
from quizapp.errors import DatabaseUnavailable


@pytest.fixture(scope="module")
def counter(migrated_database):
    upstream = urlparse(migrated_database)  # straight to Postgres, even under --through-pgbouncer
    proxy = PgWireCounter(upstream.hostname, upstream.port).start()
    proxy.direct_url = migrated_database
    yield proxy
    proxy.stop()


@pytest.fixture
def pool(counter):
    pool = db.ConnectionPool(counter.url(counter.direct_url), minconn=0, maxconn=1, statement_timeout_ms=300)
    yield pool
    pool.close()


def _statements(*texts):
    def work(cur):
        for text in texts:
            cur.execute(text)
        return cur.fetchone() if cur.description else None

    return work


def _table(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS t_trips (v int); TRUNCATE t_trips")


def _rows(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t_trips")
        return cur.fetchone()[0]


def test_a_read_is_one_round_trip_and_a_write_its_statements_plus_commit(pool, counter, pg_conn):
    _table(pg_conn)
    pool.warm()
    counter.take()
    assert db.run_read(_statements("SELECT 1 AS one"), pool=pool) == {"one": 1}
    (read,) = counter.take()
    assert read.startswith("SET LOCAL statement_timeout = 300;") and "transaction_read_only = on" in read
    insert = "INSERT INTO t_trips VALUES (1)"
    db.run_in_transaction(_statements(insert), pool=pool)
    assert [q.split("; ")[0] for q in counter.take()] == ["BEGIN", "COMMIT"]
    db.run_in_transaction(_statements(insert, insert, "SELECT count(*) AS n FROM t_trips"), pool=pool)
    assert len(counter.take()) == 4
    db.run_in_transaction(lambda cur: None, pool=pool)
    assert counter.take() == []

    def insert_twice_then_fail(cur):
        _statements(insert, insert)(cur)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        db.run_in_transaction(insert_twice_then_fail, pool=pool)
    trips = counter.take()
    assert len(trips) == 3 and trips[-1] == "ROLLBACK" and _rows(pg_conn) == 3  # rolled back


def test_reads_cannot_write_nor_send_a_second_statement(pool, counter, pg_conn):
    _table(pg_conn)
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        db.run_read(_statements("INSERT INTO t_trips VALUES (1)"), pool=pool)
    with pytest.raises(db.SecondStatementInRead):
        db.run_read(_statements("SELECT 1", "SELECT 2"), pool=pool)
    assert _rows(pg_conn) == 0
    assert pool.stats()["discarded"] == 0  # the connection stayed clean: nothing left open


def test_timeouts_fire_per_transaction_and_leave_nothing_behind(pool):
    for run, texts in (
        (db.run_read, ["SELECT pg_sleep(3)"]),
        (db.run_in_transaction, ["SELECT pg_sleep(3)"]),  # the first statement, sent with BEGIN
        (db.run_in_transaction, ["SELECT 1", "SELECT pg_sleep(3)"]),  # a later one
    ):
        with pytest.raises(psycopg2.errors.QueryCanceled):
            run(_statements(*texts), pool=pool)
    conn = pool.acquire()  # the one connection all of them used
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "0"
            cur.execute("SHOW transaction_read_only")
            assert cur.fetchone()[0] == "off"
    finally:
        pool.release(conn)


def _terminate_own_backend(cur, pg_conn):
    with pg_conn.cursor() as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (cur.connection.info.backend_pid,))


def test_a_lost_connection_is_retried_unless_the_commit_was_in_flight(pool, pg_conn):
    _table(pg_conn)
    calls = []

    def read(cur):
        calls.append("read")
        if len(calls) == 1:
            _terminate_own_backend(cur, pg_conn)
        cur.execute("SELECT 7 AS seven")
        return cur.fetchone()["seven"]

    assert db.run_read(read, pool=pool) == 7 and len(calls) == 2  # read-only: safe to run again

    def write_then_lose(cur):
        calls.append("write")
        cur.execute("INSERT INTO t_trips VALUES (1)")
        if calls.count("write") == 1:
            _terminate_own_backend(cur, pg_conn)
            cur.execute("INSERT INTO t_trips VALUES (2)")

    calls.clear()
    db.run_in_transaction(write_then_lose, pool=pool)  # lost before COMMIT: retried, written once
    assert len(calls) == 2 and _rows(pg_conn) == 1

    def lose_at_commit(cur):
        calls.append("commit")
        cur.execute("INSERT INTO t_trips VALUES (3)")
        _terminate_own_backend(cur, pg_conn)

    calls.clear()
    with pytest.raises(DatabaseUnavailable) as caught:
        db.run_in_transaction(lose_at_commit, pool=pool)
    assert caught.value.__cause__.during_commit and calls == ["commit"]  # outcome unknown: no retry


def test_round_trips_per_route(make_app, counter):
    app = make_app(DATABASE_URL=counter.url(counter.direct_url), DB_POOL_MIN=0, RATELIMIT_ENABLED="false")
    seen, _ = walk(app, counter)
    assert {route: len(queries) for route, queries in seen.items()} == {
        "submit": 4,  # BEGIN with the attempt's INSERT, the two quota upserts, COMMIT
        "submit_again": 3,  # the INSERT finds the attempt, the SELECT reads it, COMMIT
        "result": 1,
        "email": 4,
        "checkout": 6,
        "webhook": 8,
        "receipt": 2,
        "readyz": 1,
    }
