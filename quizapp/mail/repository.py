"""SQL for subscribers and the email outbox; every function takes the cursor first."""

from __future__ import annotations

# The functions below share one shape (a statement with named parameters, then a fetch) over
# different tables and columns: that is the repository pattern, not repeated logic to merge.

# Transactional mail goes out even to an address that unsubscribed from the rest.
TRANSACTIONAL_KINDS = ("receipt",)


def upsert_subscriber(cur, *, email, attempt_id):
    """One row per email (case-insensitive); the latest attempt wins."""
    cur.execute(
        "INSERT INTO email_subscribers (email, last_attempt_id) VALUES (%(email)s, %(attempt)s)"
        " ON CONFLICT ((lower(email))) DO UPDATE"
        " SET last_attempt_id = EXCLUDED.last_attempt_id, email = EXCLUDED.email, updated_at = now()"
        " RETURNING id",
        {"email": email, "attempt": attempt_id},
    )
    return cur.fetchone()["id"]


def subscriber(cur, subscriber_id):
    cur.execute(
        "SELECT id, email, confirmed_at, unsubscribed_at FROM email_subscribers WHERE id = %(id)s",
        {"id": subscriber_id},
    )
    return cur.fetchone()


def confirm_subscriber(cur, subscriber_id):
    cur.execute(
        "UPDATE email_subscribers SET confirmed_at = coalesce(confirmed_at, now()),"
        " unsubscribed_at = NULL, updated_at = now() WHERE id = %(id)s",
        {"id": subscriber_id},
    )


def unsubscribe(cur, subscriber_id):
    """Stop every pending non-transactional mail to this address, now and later."""
    cur.execute(
        "UPDATE email_subscribers SET unsubscribed_at = coalesce(unsubscribed_at, now()), updated_at = now()"
        " WHERE id = %(id)s",
        {"id": subscriber_id},
    )
    cur.execute(
        "UPDATE email_outbox SET status = 'cancelled', last_error = 'unsubscribed'"
        " WHERE subscriber_id = %(id)s AND status = 'pending' AND kind <> ALL(%(kinds)s)",
        {"id": subscriber_id, "kinds": list(TRANSACTIONAL_KINDS)},
    )


def enqueue(cur, *, subscriber_id, attempt_id, kind, subject, body, unsubscribe_url, dedup_key=None):
    """Queue one rendered mail; None when a mail with this dedup key was already queued."""
    # ON CONFLICT: a confirmation link clicked twice or a replayed webhook queues its mail once.
    cur.execute(
        "INSERT INTO email_outbox"
        " (subscriber_id, attempt_id, kind, subject, body, unsubscribe_url, dedup_key)"
        " VALUES (%(subscriber)s, %(attempt)s, %(kind)s, %(subject)s, %(body)s, %(unsub)s, %(dedup)s)"
        " ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
        {
            "subscriber": subscriber_id,
            "attempt": attempt_id,
            "kind": kind,
            "subject": subject,
            "body": body,
            "unsub": unsubscribe_url,
            "dedup": dedup_key,
        },
    )
    row = cur.fetchone()
    return None if row is None else row["id"]


def claim_due(cur):
    """The oldest due mail, row-locked until this transaction ends; None when nothing is due."""
    # SKIP LOCKED: racing mailers each take a different row and never wait on one another.
    cur.execute(
        "SELECT o.id, o.kind, o.subject, o.body, o.unsubscribe_url, o.attempts,"
        " s.email, s.unsubscribed_at"
        " FROM email_outbox o JOIN email_subscribers s ON s.id = o.subscriber_id"
        " WHERE o.status = 'pending' AND o.next_attempt_at <= now()"
        " ORDER BY o.next_attempt_at, o.id LIMIT 1 FOR UPDATE OF o SKIP LOCKED"
    )
    return cur.fetchone()


def mark_sent(cur, outbox_id):
    cur.execute(
        "UPDATE email_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1,"
        " last_error = NULL WHERE id = %(id)s",
        {"id": outbox_id},
    )


def mark_cancelled(cur, outbox_id, *, reason):
    cur.execute(
        "UPDATE email_outbox SET status = 'cancelled', last_error = %(reason)s WHERE id = %(id)s",
        {"id": outbox_id, "reason": reason},
    )


def mark_failed(cur, outbox_id, *, error, retry_in_seconds, dead):
    cur.execute(
        "UPDATE email_outbox SET attempts = attempts + 1, last_error = %(error)s,"
        " status = CASE WHEN %(dead)s THEN 'dead' ELSE 'pending' END,"
        " next_attempt_at = now() + make_interval(secs => %(delay)s) WHERE id = %(id)s",
        {"id": outbox_id, "error": error[:500], "dead": dead, "delay": retry_in_seconds},
    )


def outbox_figures(cur, *, backlog_after_seconds):
    """Mail due for longer than the threshold (a stuck mailer), and dead letters."""
    cur.execute(
        "SELECT count(*) FILTER (WHERE status = 'pending'"
        "   AND next_attempt_at < now() - make_interval(secs => %(after)s)) AS backlog,"
        " count(*) FILTER (WHERE status = 'pending') AS pending,"
        " count(*) FILTER (WHERE status = 'dead') AS dead"
        " FROM email_outbox",
        {"after": backlog_after_seconds},
    )
    return dict(cur.fetchone())
