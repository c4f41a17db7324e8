"""SQL for quiz attempts, daily quotas and email capture; every function takes the cursor first."""

from __future__ import annotations

from psycopg2.extras import Json


def insert_attempt(cur, *, attempt_key, public_id, answers, scores, top_model, started_at, owner_key):
    """Insert the attempt once; None when this attempt key was already recorded."""
    # ON CONFLICT: a double submit or refresh races on attempt_key; the loser records nothing.
    cur.execute(
        "INSERT INTO quiz_attempts"
        " (attempt_key, public_id, answers, scores, top_model, started_at, owner_key)"
        " VALUES (%(key)s, %(public_id)s, %(answers)s, %(scores)s, %(top)s, %(started)s, %(owner)s)"
        " ON CONFLICT (attempt_key) DO NOTHING"
        " RETURNING id, public_id, answers, scores, top_model, started_at, completed_at, paid_at,"
        " owner_key, link_version",
        {
            "key": attempt_key,
            "public_id": public_id,
            "answers": Json(answers),
            "scores": Json(scores),
            "top": top_model,
            "started": started_at,
            "owner": owner_key,
        },
    )
    return cur.fetchone()


def attempt_by_key(cur, attempt_key):
    cur.execute(
        "SELECT id, public_id, answers, scores, top_model, started_at, completed_at, paid_at,"
        " owner_key, link_version"
        " FROM quiz_attempts WHERE attempt_key = %(key)s",
        {"key": attempt_key},
    )
    return cur.fetchone()


def attempt_by_public_id(cur, public_id, for_update=False):
    if for_update:
        # FOR UPDATE when unlocking: concurrent webhooks for one attempt serialise on the row.
        cur.execute(
            "SELECT id, public_id, answers, scores, top_model, started_at, completed_at, paid_at,"
            " owner_key, link_version"
            " FROM quiz_attempts WHERE public_id = %(public_id)s FOR UPDATE",
            {"public_id": public_id},
        )
    else:
        cur.execute(
            "SELECT id, public_id, answers, scores, top_model, started_at, completed_at, paid_at,"
            " owner_key, link_version"
            " FROM quiz_attempts WHERE public_id = %(public_id)s",
            {"public_id": public_id},
        )
    return cur.fetchone()


def take_quota(cur, *, client_key, day, daily_quota):
    """Use one result from today's quota; the remaining count, or None when it is used up."""
    # The row is created once per (client, day); the conditional UPDATE is the atomic decrement.
    cur.execute(
        "INSERT INTO quiz_quota (client_key, day, remaining) VALUES (%(client)s, %(day)s, %(quota)s)"
        " ON CONFLICT (client_key, day) DO NOTHING",
        {"client": client_key, "day": day, "quota": daily_quota},
    )
    cur.execute(
        "UPDATE quiz_quota SET remaining = remaining - 1"
        " WHERE client_key = %(client)s AND day = %(day)s AND remaining > 0 RETURNING remaining",
        {"client": client_key, "day": day},
    )
    row = cur.fetchone()
    return None if row is None else row["remaining"]


def take_address_quota(cur, *, address_key, day, daily_quota):
    """Use one result from the address's quota for today; the remaining count, or None."""
    # Same shape as take_quota: create the day's row once, then the atomic conditional decrement.
    cur.execute(
        "INSERT INTO quiz_address_quota (address_key, day, remaining)"
        " VALUES (%(address)s, %(day)s, %(quota)s) ON CONFLICT (address_key, day) DO NOTHING",
        {"address": address_key, "day": day, "quota": daily_quota},
    )
    cur.execute(
        "UPDATE quiz_address_quota SET remaining = remaining - 1"
        " WHERE address_key = %(address)s AND day = %(day)s AND remaining > 0 RETURNING remaining",
        {"address": address_key, "day": day},
    )
    row = cur.fetchone()
    return None if row is None else row["remaining"]


def attempt_by_id(cur, attempt_id, for_update=False):
    if for_update:
        # FOR UPDATE when unlocking: payments for one attempt (any of its checkouts) serialise here.
        cur.execute(
            "SELECT id, public_id, answers, scores, top_model, started_at, completed_at, paid_at,"
            " owner_key, link_version"
            " FROM quiz_attempts WHERE id = %(id)s FOR UPDATE",
            {"id": attempt_id},
        )
    else:
        cur.execute(
            "SELECT id, public_id, answers, scores, top_model, started_at, completed_at, paid_at,"
            " owner_key, link_version"
            " FROM quiz_attempts WHERE id = %(id)s",
            {"id": attempt_id},
        )
    return cur.fetchone()


def revoke_report_links(cur, attempt_id):
    """Every mailed report link of this attempt stops working (their version no longer matches)."""
    cur.execute(
        "UPDATE quiz_attempts SET link_version = link_version + 1 WHERE id = %(id)s RETURNING link_version",
        {"id": attempt_id},
    )
    return cur.fetchone()["link_version"]
