"""The retention job deletes exactly the rows older than the policy, and `make prune` runs it."""

import os
import subprocess
from datetime import UTC, datetime, timedelta

from devstack.processes import ROOT, VENV_BIN
from quizapp.retention.service import RetentionPolicy, prune

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def _seed(pg_conn):
    with pg_conn.cursor() as cur:
        for days_ago in (0, 1, 29, 31, 40):
            day = (NOW - timedelta(days=days_ago)).date()
            cur.execute("INSERT INTO quiz_quota (client_key, day, remaining) VALUES ('c', %s, 3)", (day,))
        # Two address groups; 30 days ago is the cutoff day itself, so it is kept.
        for address_key in ("a", "b"):
            for days_ago in (0, 30, 31, 45):
                day = (NOW - timedelta(days=days_ago)).date()
                cur.execute(
                    "INSERT INTO quiz_address_quota (address_key, day, remaining) VALUES (%s, %s, 900)",
                    (address_key, day),
                )
        cur.execute("INSERT INTO email_subscribers (email) VALUES ('a@example.org') RETURNING id")
        subscriber = cur.fetchone()[0]
        for sent_days_ago in (None, 1, 29, 31, 100):
            sent_at = None if sent_days_ago is None else NOW - timedelta(days=sent_days_ago)
            cur.execute(
                "INSERT INTO email_outbox (subscriber_id, kind, created_at, sent_at) "
                "VALUES (%s, 'result', %s, %s)",
                (subscriber, NOW - timedelta(days=200), sent_at),
            )
        for days_ago in (1, 364, 366, 900):
            cur.execute(
                "INSERT INTO audit_log (actor, action, detail, created_at) VALUES ('admin', 'x', '{}', %s)",
                (NOW - timedelta(days=days_ago),),
            )


def _counts(pg_conn):
    with pg_conn.cursor() as cur:
        counts = {}
        for table in ("quiz_quota", "quiz_address_quota", "email_outbox", "audit_log"):
            cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
            counts[table] = cur.fetchone()[0]
        return counts


def test_prune_deletes_only_what_the_policy_says(pg_conn):
    _seed(pg_conn)
    deleted = prune(os.environ["DATABASE_URL"], RetentionPolicy(days=30, audit_days=365), now=NOW)
    assert deleted == {"quiz_quota": 2, "quiz_address_quota": 4, "email_outbox": 2, "audit_log": 2}
    # Kept: today's and recent quota, the pending mail and recent sent ones, a year of audit.
    assert _counts(pg_conn) == {"quiz_quota": 3, "quiz_address_quota": 4, "email_outbox": 3, "audit_log": 2}
    with pg_conn.cursor() as cur:
        cur.execute("SELECT address_key, day FROM quiz_address_quota ORDER BY address_key, day")
        kept = cur.fetchall()
    recent = [(NOW - timedelta(days=days_ago)).date() for days_ago in (30, 0)]
    assert kept == [(key, day) for key in ("a", "b") for day in recent]
    again = prune(os.environ["DATABASE_URL"], RetentionPolicy(days=30, audit_days=365), now=NOW)
    assert again == {"quiz_quota": 0, "quiz_address_quota": 0, "email_outbox": 0, "audit_log": 0}


def test_the_command_reads_the_days_from_the_environment(pg_conn):
    _seed(pg_conn)
    with pg_conn.cursor() as cur:  # a crowd's quota for the real today: the command keeps it
        cur.execute(
            "INSERT INTO quiz_address_quota (address_key, day, remaining) VALUES ('today', %s, 900)",
            (datetime.now(UTC).date(),),
        )
    env = {**os.environ, "RETENTION_DAYS": "2", "RETENTION_AUDIT_DAYS": "2"}
    result = subprocess.run(  # noqa: S603
        [str(VENV_BIN / "python"), "-m", "quizapp.retention"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "retention: kept 2 days (2 for audit_log)" in result.stdout
    assert "quiz_quota 5, quiz_address_quota 8, email_outbox 4, audit_log 4" in result.stdout
    # Every row seeded around NOW is long past: only the pending mail and today's address quota are left.
    assert _counts(pg_conn) == {"quiz_quota": 0, "quiz_address_quota": 1, "email_outbox": 1, "audit_log": 0}
