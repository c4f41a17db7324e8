"""SQL of the retention job: each call deletes at most one batch of rows older than a cutoff."""

from __future__ import annotations

from psycopg2 import sql

DAILY_QUOTA_TABLES = ("quiz_quota", "quiz_address_quota")  # one row per person / address group a UTC day


def delete_old_quota(cur, *, table: str, cutoff_day, batch: int) -> int:
    # A daily quota row counts one UTC day: once the day is past, the row only takes space.
    return _delete_batch(cur, table=table, where=sql.SQL("day < %(cutoff)s"), cutoff=cutoff_day, batch=batch)


def delete_sent_mail(cur, *, cutoff, batch: int) -> int:
    # Only mail that was sent or cancelled: pending rows and dead letters stay until resolved.
    where = sql.SQL(
        "(sent_at IS NOT NULL AND sent_at < %(cutoff)s) OR (status = 'cancelled' AND created_at < %(cutoff)s)"
    )
    return _delete_batch(cur, table="email_outbox", where=where, cutoff=cutoff, batch=batch)


def delete_old_audit(cur, *, cutoff, batch: int) -> int:
    where = sql.SQL("created_at < %(cutoff)s")
    return _delete_batch(cur, table="audit_log", where=where, cutoff=cutoff, batch=batch)


def _delete_batch(cur, *, table: str, where: sql.SQL, cutoff, batch: int) -> int:
    """Delete at most `batch` rows of `table` matching `where` (DELETE has no LIMIT: pick them by ctid).
    The table and condition are this module's constants, composed by psycopg2.sql (never input)."""
    cur.execute(
        sql.SQL(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM {table} WHERE {where} LIMIT %(batch)s))"
        ).format(table=sql.Identifier(table), where=where),
        {"cutoff": cutoff, "batch": batch},
    )
    return cur.rowcount
