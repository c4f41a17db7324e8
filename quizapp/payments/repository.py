"""SQL for checkout sessions, payments and refunds; every function takes the cursor first."""

from __future__ import annotations

# The functions below share one shape (a statement with named parameters, then a fetch) over
# different tables and columns: that is the repository pattern, not repeated logic to merge.


def insert_checkout_session(
    cur, *, session_id, attempt_id, provider, amount_cents, currency, url, expires_at
):
    # ON CONFLICT: concurrent clicks share one idempotency key, so they bring back the same session.
    cur.execute(
        "INSERT INTO checkout_sessions (id, attempt_id, provider, amount_cents, currency, url, expires_at)"
        " VALUES (%(id)s, %(attempt)s, %(provider)s, %(amount)s, %(currency)s, %(url)s, %(expires)s)"
        " ON CONFLICT (id) DO NOTHING",
        {
            "id": session_id,
            "attempt": attempt_id,
            "provider": provider,
            "amount": amount_cents,
            "currency": currency,
            "url": url,
            "expires": expires_at,
        },
    )


def open_checkout(cur, attempt_id):
    """The attempt's unpaid, unexpired checkout (None if none) and how many it ever had."""
    cur.execute(
        "SELECT id, url, expires_at, completed_at, count(*) OVER () AS total FROM checkout_sessions"
        " WHERE attempt_id = %(attempt)s ORDER BY created_at DESC",
        {"attempt": attempt_id},
    )
    rows = cur.fetchall()
    total = rows[0]["total"] if rows else 0
    # A stored session this close to its expiry is not offered again: the buyer needs time to pay.
    cur.execute(
        "SELECT id, url FROM checkout_sessions WHERE attempt_id = %(attempt)s AND completed_at IS NULL"
        " AND url IS NOT NULL AND expires_at > now() + interval '10 minutes'"
        " ORDER BY created_at DESC LIMIT 1",
        {"attempt": attempt_id},
    )
    return cur.fetchone(), total


def checkout_session(cur, session_id):
    cur.execute(
        "SELECT c.id, c.attempt_id, c.amount_cents, c.currency, c.provider, c.completed_at,"
        " a.public_id, a.paid_at"
        " FROM checkout_sessions c JOIN quiz_attempts a ON a.id = c.attempt_id WHERE c.id = %(id)s",
        {"id": session_id},
    )
    return cur.fetchone()


def expire_checkout(cur, session_id):
    cur.execute(
        "UPDATE checkout_sessions SET expires_at = least(expires_at, now()) WHERE id = %(id)s",
        {"id": session_id},
    )


def complete_checkout(cur, session_id):
    cur.execute(
        "UPDATE checkout_sessions SET completed_at = coalesce(completed_at, now()) WHERE id = %(id)s",
        {"id": session_id},
    )


def record_payment(
    cur,
    *,
    event_id,
    attempt_id,
    checkout_session_id,
    provider,
    amount_cents,
    currency,
    payment_intent,
    status,
):
    """Record the checkout's payment once; None when this checkout (or event) was already recorded."""
    # ON CONFLICT: one row per checkout session (unique), whichever events and replays report it.
    cur.execute(
        "INSERT INTO payments (event_id, attempt_id, checkout_session_id, provider, amount_cents,"
        " currency, payment_intent, status)"
        " VALUES (%(event)s, %(attempt)s, %(cs)s, %(provider)s, %(amount)s, %(currency)s, %(pi)s, %(status)s)"
        " ON CONFLICT DO NOTHING RETURNING id",
        {
            "event": event_id,
            "attempt": attempt_id,
            "cs": checkout_session_id,
            "provider": provider,
            "amount": amount_cents,
            "currency": currency,
            "pi": payment_intent,
            "status": status,
        },
    )
    row = cur.fetchone()
    return None if row is None else row["id"]


def mark_paid(cur, attempt_id):
    """Unlock the attempt; False when it was already unlocked."""
    cur.execute(
        "UPDATE quiz_attempts SET paid_at = now() WHERE id = %(id)s AND paid_at IS NULL RETURNING id",
        {"id": attempt_id},
    )
    return cur.fetchone() is not None


def payment(cur, payment_id):
    cur.execute(
        "SELECT p.id, p.attempt_id, p.checkout_session_id, p.provider, p.amount_cents, p.currency,"
        " p.payment_intent, p.status, p.refund_id, p.refund_error, p.created_at, a.public_id, a.paid_at"
        " FROM payments p JOIN quiz_attempts a ON a.id = p.attempt_id WHERE p.id = %(id)s",
        {"id": payment_id},
    )
    return cur.fetchone()


def kept_payment(cur, attempt_id):
    cur.execute(
        "SELECT id, checkout_session_id, amount_cents, currency, created_at FROM payments"
        " WHERE attempt_id = %(attempt)s AND status = 'kept' ORDER BY id LIMIT 1",
        {"attempt": attempt_id},
    )
    return cur.fetchone()


def set_refund_result(cur, payment_id, *, refund_id=None, error=None):
    cur.execute(
        "UPDATE payments SET status ="
        " CASE WHEN %(refund)s::text IS NULL THEN 'refund_failed' ELSE 'refunded' END,"
        " refund_id = %(refund)s, refund_error = %(error)s WHERE id = %(id)s",
        {"id": payment_id, "refund": refund_id, "error": error},
    )


def payments_needing_refund(cur, limit=50):
    cur.execute(
        "SELECT p.id, p.checkout_session_id, p.amount_cents, p.currency, p.status, p.refund_error,"
        " p.created_at, a.public_id FROM payments p JOIN quiz_attempts a ON a.id = p.attempt_id"
        " WHERE p.status IN ('refund_pending', 'refund_failed') ORDER BY p.created_at LIMIT %(limit)s",
        {"limit": limit},
    )
    return cur.fetchall()


def payment_figures(cur):
    """Webhook mismatches in the last 24 hours and payments waiting for a refund."""
    cur.execute(
        "SELECT (SELECT count(*) FROM audit_log WHERE action = 'payment.mismatch'"
        "        AND created_at > now() - interval '24 hours') AS mismatches_24h,"
        " (SELECT count(*) FROM payments"
        "  WHERE status IN ('refund_pending', 'refund_failed')) AS refunds_pending"
    )
    return dict(cur.fetchone())
