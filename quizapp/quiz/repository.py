"""SQL for quiz attempts, daily quotas and email capture; every function takes the cursor first."""

from __future__ import annotations

from psycopg2 import sql
from psycopg2.extras import Json

# The functions below share one shape (a statement with named parameters, then a fetch) over
# different tables and columns: that is the repository pattern, not repeated logic to merge.

# What every read of an attempt returns.
_ATTEMPT_COLUMNS = sql.SQL(
    "id, public_id, answers, scores, top_model, started_at, completed_at, paid_at, owner_key, link_version"
)


def insert_attempt(cur, *, attempt_key, public_id, answers, scores, top_model, started_at, owner_key):
    """Insert the attempt once; None when this attempt key was already recorded."""
    # ON CONFLICT: a double submit or refresh races on attempt_key; the loser records nothing.
    cur.execute(
        sql.SQL(
            "INSERT INTO quiz_attempts"
            " (attempt_key, public_id, answers, scores, top_model, started_at, owner_key)"
            " VALUES (%(key)s, %(public_id)s, %(answers)s, %(scores)s, %(top)s, %(started)s, %(owner)s)"
            " ON CONFLICT (attempt_key) DO NOTHING RETURNING {columns}"
        ).format(columns=_ATTEMPT_COLUMNS),
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
    return _attempt_where(cur, "attempt_key", attempt_key)


def attempt_by_public_id(cur, public_id, for_update=False):
    """for_update when unlocking: concurrent webhooks for one attempt serialise on the row."""
    return _attempt_where(cur, "public_id", public_id, for_update=for_update)


def attempt_by_id(cur, attempt_id, for_update=False):
    """for_update when unlocking: payments for one attempt (any of its checkouts) serialise here."""
    return _attempt_where(cur, "id", attempt_id, for_update=for_update)


def _attempt_where(cur, column, value, *, for_update=False):
    """The one attempt whose `column` (one of the three keys above) equals value, or None."""
    cur.execute(
        sql.SQL("SELECT {columns} FROM quiz_attempts WHERE {column} = %(value)s{lock}").format(
            columns=_ATTEMPT_COLUMNS,
            column=sql.Identifier(column),
            lock=sql.SQL(" FOR UPDATE" if for_update else ""),
        ),
        {"value": value},
    )
    return cur.fetchone()


def take_quota(cur, *, client_key, day, daily_quota):
    """Use one result from the person's quota for today; the remaining count, or None when it is used up."""
    return _take_daily(
        cur, table="quiz_quota", key_column="client_key", key=client_key, day=day, daily_quota=daily_quota
    )


def take_address_quota(cur, *, address_key, day, daily_quota):
    """Use one result from the address's quota for today; the remaining count, or None."""
    return _take_daily(
        cur,
        table="quiz_address_quota",
        key_column="address_key",
        key=address_key,
        day=day,
        daily_quota=daily_quota,
    )


def _take_daily(cur, *, table, key_column, key, day, daily_quota):
    """Both daily quotas, in one statement (one round trip): the row is created once per (key, day)
    already decremented, later takes decrement it while it stays above 0. The names come from the two
    callers above, composed by psycopg2.sql (never input)."""
    # ON CONFLICT DO UPDATE: concurrent takes serialise on the row; each sees the one before it.
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} AS q ({key_column}, day, remaining)"
            " SELECT %(key)s, %(day)s, %(quota)s - 1 WHERE %(quota)s > 0"
            " ON CONFLICT ({key_column}, day) DO UPDATE SET remaining = q.remaining - 1"
            " WHERE q.remaining > 0 RETURNING q.remaining"
        ).format(table=sql.Identifier(table), key_column=sql.Identifier(key_column)),
        {"key": key, "day": day, "quota": daily_quota},
    )
    row = cur.fetchone()
    return None if row is None else row["remaining"]


def revoke_report_links(cur, attempt_id):
    """Every mailed report link of this attempt stops working (their version no longer matches)."""
    cur.execute(
        "UPDATE quiz_attempts SET link_version = link_version + 1 WHERE id = %(id)s RETURNING link_version",
        {"id": attempt_id},
    )
    return cur.fetchone()["link_version"]
