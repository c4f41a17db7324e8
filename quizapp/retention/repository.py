"""SQL of the retention job: each call deletes at most one batch of rows older than a cutoff."""

from __future__ import annotations


def delete_old_quota(cur, *, cutoff_day, batch: int) -> int:
    # quiz_quota counts one UTC day per client: once the day is past, the row only takes space.
    cur.execute(
        "DELETE FROM quiz_quota WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM quiz_quota WHERE day < %(cutoff)s LIMIT %(batch)s))",
        {"cutoff": cutoff_day, "batch": batch},
    )
    return cur.rowcount


def delete_sent_mail(cur, *, cutoff, batch: int) -> int:
    # Only mail that was sent or cancelled: pending rows and dead letters stay until resolved.
    cur.execute(
        "DELETE FROM email_outbox WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM email_outbox WHERE (sent_at IS NOT NULL AND sent_at < %(cutoff)s) "
        "OR (status = 'cancelled' AND created_at < %(cutoff)s) LIMIT %(batch)s))",
        {"cutoff": cutoff, "batch": batch},
    )
    return cur.rowcount


def delete_old_audit(cur, *, cutoff, batch: int) -> int:
    cur.execute(
        "DELETE FROM audit_log WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM audit_log WHERE created_at < %(cutoff)s LIMIT %(batch)s))",
        {"cutoff": cutoff, "batch": batch},
    )
    return cur.rowcount
