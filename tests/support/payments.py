"""Helpers for payment tests: a result owned by a test client, its checkout, signed webhook posts."""

from __future__ import annotations

import time

from devstack.quiz_walk import answer_all, csrf_from, submit
from quizapp.payments.providers import completed_event, sign_payload


def owned_result(app):
    """A fresh client that took the quiz, and its result's public id."""
    client = app.test_client()
    answer_all(client, app.extensions["quiz_content"])
    return client, submit(client).headers["Location"].rsplit("/", 1)[-1]


def click_unlock(client, public_id):
    token = csrf_from(client.get(f"/r/{public_id}"))
    return client.post("/pay/checkout", data={"csrf_token": token, "public_id": public_id})


def checkout_id(response) -> str:
    """The checkout session id in an Unlock redirect (offline /pay/test/<id> or the fake's URL)."""
    assert response.status_code == 303, response.data[:300]
    return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


def post_event(client, payload: str, secret: str, *, timestamp=None, signature=None):
    headers = {"Content-Type": "application/json"}
    sig = signature if signature is not None else sign_payload(payload, secret, timestamp)
    if sig:
        headers["Stripe-Signature"] = sig
    return client.post("/pay/webhook", data=payload, headers=headers)


def pay(client, secret, session_id, public_id, amount=900, **event):
    payload = completed_event(session_id, public_id, amount, **event)
    return post_event(client, payload, secret, timestamp=int(time.time()))


def counts(pg_conn) -> dict:
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM payments) AS payments,"
            " (SELECT count(*) FROM quiz_attempts WHERE paid_at IS NOT NULL) AS paid,"
            " (SELECT count(*) FROM checkout_sessions WHERE completed_at IS NOT NULL) AS completed,"
            " (SELECT count(*) FROM email_outbox) AS mails,"
            " (SELECT count(*) FROM email_subscribers) AS subscribers,"
            " (SELECT count(*) FROM audit_log) AS audit"
        )
        return dict(
            zip(
                ("payments", "paid", "completed", "mails", "subscribers", "audit"),
                cur.fetchone(),
                strict=True,
            )
        )
