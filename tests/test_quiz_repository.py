"""Quiz SQL against real Postgres: idempotent attempts, exact quotas under concurrency, upserts."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import gevent
import pytest

from quizapp import db
from quizapp.errors import TooManyRequests
from quizapp.mail import repository as mail_repository
from quizapp.quiz import repository, service


@pytest.fixture
def pool():
    pool = db.ConnectionPool(os.environ["DATABASE_URL"], minconn=0, maxconn=10, timeout=30)
    yield pool
    pool.close()


def _count(pg_conn, sql, params=None):
    with pg_conn.cursor() as cur:
        cur.execute(sql, params or {})
        return cur.fetchone()[0]


def _record(pool, key, client="client-a", quota=20):
    scores = [{"model_id": "saas", "score": 80, "reasons": ["r"]}]
    return db.run_in_transaction(
        service._record_attempt,
        pool=pool,
        attempt_key=key,
        answers={"capital": 1},
        scores=scores,
        started_at=datetime.now(UTC),
        quota=service.DailyQuota(person=client, address="address-a", per_person=quota, per_address=1000),
    )


def test_same_attempt_key_records_one_attempt_even_in_parallel(pool, pg_conn):
    jobs = [gevent.spawn(_record, pool, "key-1") for _ in range(12)]
    gevent.joinall(jobs, raise_error=True)
    public_ids = {job.value["public_id"] for job in jobs}
    assert len(public_ids) == 1
    assert _count(pg_conn, "SELECT count(*) FROM quiz_attempts") == 1
    # Only the first insert used the quota.
    assert _count(pg_conn, "SELECT remaining FROM quiz_quota") == 19
    assert len(next(iter(public_ids))) >= 20


@pytest.mark.parametrize(("greenlets", "quota"), [(30, 7), (12, 12)])
def test_quota_lets_exactly_k_of_n_parallel_results_through(pool, pg_conn, greenlets, quota):
    def attempt(i):
        try:
            _record(pool, f"key-{i}", client="one-client", quota=quota)
            return True
        except TooManyRequests:
            return False

    jobs = [gevent.spawn(attempt, i) for i in range(greenlets)]
    gevent.joinall(jobs, raise_error=True)
    assert sum(job.value for job in jobs) == quota
    assert _count(pg_conn, "SELECT count(*) FROM quiz_attempts") == quota  # refused ones rolled back
    assert _count(pg_conn, "SELECT remaining FROM quiz_quota") == 0


def test_quota_is_per_client_and_per_day(pool):
    def take(client, day):
        return db.run_in_transaction(
            repository.take_quota, pool=pool, client_key=client, day=day, daily_quota=2
        )

    today, tomorrow = date(2026, 1, 1), date(2026, 1, 2)
    assert [take("a", today), take("a", today), take("a", today)] == [1, 0, None]
    assert take("b", today) == 1
    assert take("a", tomorrow) == 1


def test_subscriber_upsert_keeps_one_row_and_links_latest_attempt(pool, pg_conn):
    first, second = _record(pool, "k1"), _record(pool, "k2")

    def store(email, attempt):
        def work(cur):
            sid = mail_repository.upsert_subscriber(cur, email=email, attempt_id=attempt["id"])
            mail_repository.enqueue(
                cur,
                subscriber_id=sid,
                attempt_id=attempt["id"],
                kind="confirm",
                subject="s",
                body="b",
                unsubscribe_url="u",
            )
            return sid

        return db.run_in_transaction(work, pool=pool)

    jobs = [gevent.spawn(store, "Ada@Example.org", first) for _ in range(5)]
    gevent.joinall(jobs, raise_error=True)
    assert len({job.value for job in jobs}) == 1
    assert store("ada@example.org", second) == jobs[0].value
    assert _count(pg_conn, "SELECT count(*) FROM email_subscribers") == 1
    assert _count(pg_conn, "SELECT last_attempt_id FROM email_subscribers") == second["id"]
    assert _count(pg_conn, "SELECT count(*) FROM email_outbox WHERE sent_at IS NULL") == 6
