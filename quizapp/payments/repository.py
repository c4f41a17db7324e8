"""SQL for checkout sessions and payments; every function takes the cursor first."""

from __future__ import annotations


def insert_checkout_session(cur, *, session_id, attempt_id, provider, amount_cents):
    cur.execute(
        "INSERT INTO checkout_sessions (id, attempt_id, provider, amount_cents)"
        " VALUES (%(id)s, %(attempt)s, %(provider)s, %(amount)s) ON CONFLICT (id) DO NOTHING",
        {
            "id": session_id,
            "attempt": attempt_id,
            "provider": provider,
            "amount": amount_cents,
        },
    )


def checkout_session(cur, session_id):
    cur.execute(
        "SELECT c.id, c.amount_cents, c.provider, a.public_id, a.paid_at"
        " FROM checkout_sessions c JOIN quiz_attempts a ON a.id = c.attempt_id WHERE c.id = %(id)s",
        {"id": session_id},
    )
    return cur.fetchone()


def record_payment(cur, *, event_id, attempt_id, checkout_session_id, provider, amount_cents):
    """Record the event's payment once; False when this event id was already recorded."""
    # ON CONFLICT: webhook retries and replays carry the same event id; only the first counts.
    cur.execute(
        "INSERT INTO payments (event_id, attempt_id, checkout_session_id, provider, amount_cents)"
        " VALUES (%(event)s, %(attempt)s, %(cs)s, %(provider)s, %(amount)s)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING id",
        {
            "event": event_id,
            "attempt": attempt_id,
            "cs": checkout_session_id,
            "provider": provider,
            "amount": amount_cents,
        },
    )
    return cur.fetchone() is not None


def mark_paid(cur, attempt_id):
    """Unlock the attempt; False when it was already unlocked."""
    cur.execute(
        "UPDATE quiz_attempts SET paid_at = now() WHERE id = %(id)s AND paid_at IS NULL RETURNING id",
        {"id": attempt_id},
    )
    return cur.fetchone() is not None
