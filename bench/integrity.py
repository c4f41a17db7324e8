"""After a step: no confirmed write lost, no duplicate, quota exact, payments = unlocks (from Postgres)."""

from __future__ import annotations

import psycopg2


def integrity(dsn: str, rows: list[tuple], quota: int) -> dict:
    submits_ok = sum(1 for _, m, t, s, *_ in rows if m == "POST" and t == "/submit" and s == 303)
    submits_sent = sum(1 for _, m, t, *_ in rows if m == "POST" and t == "/submit")
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT attempt_key), count(DISTINCT public_id) FROM quiz_attempts"
        )
        attempts, keys, ids = cur.fetchone()
        cur.execute("SELECT coalesce(sum(%(q)s - remaining), 0) FROM quiz_quota", {"q": quota})
        quota_used = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM payments")
        payments = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM quiz_attempts WHERE paid_at IS NOT NULL")
        unlocked = cur.fetchone()[0]
    conn.close()
    return integrity_checks(submits_ok, attempts, keys, ids, quota_used, payments, unlocked, submits_sent)


def integrity_checks(
    confirmed, attempts, keys, ids, quota_used, payments, unlocked, submits_sent=None
) -> dict:
    """No confirmed write lost, no duplicate, quota exact, payments = unlocks.

    Under overload a submit can commit while its answer never reaches the client (nginx 504, client
    gone): that attempt exists without a 303 in the log. It is counted, not called a loss; a loss is
    a 303-confirmed submit missing from Postgres.
    """
    checks = {
        "submits answered 303": confirmed,
        "attempts in Postgres": attempts,
        "no confirmed write lost": attempts >= confirmed,
        "committed, answer lost in overload": attempts - confirmed if attempts > confirmed else 0,
        "no duplicates": attempts == keys == ids,
        "quota used = attempts": quota_used == attempts,
        "payments": payments,
        "payments = unlocks": payments == unlocked,
    }
    if submits_sent is not None:
        checks["no attempt without a submit"] = attempts <= submits_sent
    return checks


def normalise_integrity(checks: dict) -> dict:
    """Steps measured before integrity_checks existed carried 'attempts = submits'."""
    if "attempts = submits" not in checks:
        return checks
    confirmed, attempts = checks["submits answered 303"], checks["attempts in Postgres"]
    return integrity_checks(
        confirmed,
        attempts,
        attempts if checks["no duplicates"] else -1,
        attempts if checks["no duplicates"] else -1,
        attempts if checks["quota used = attempts"] else -1,
        checks["payments"],
        checks["payments"] if checks["payments = unlocks"] else -1,
    )
