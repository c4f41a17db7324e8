"""One visitor's walk through the database routes, with the Postgres round trips of each request.

Shared by tests/test_db_round_trips.py (exact counts) and bench/round_trips.py (before/after figures).
"""

from __future__ import annotations

import time

from devstack.forms import csrf_token
from devstack.pg_wire_counter import PgWireCounter
from devstack.quiz_walk import answer_all

# A route, the request it makes; the order matters (a result before its email, a checkout before
# the webhook that pays it).
ROUTES = ("submit", "submit_again", "result", "email", "checkout", "webhook", "receipt", "readyz")


def walk(app, counter: PgWireCounter) -> tuple[dict[str, list[str]], str]:
    """The Query texts each route sent (the app's DATABASE_URL must go through counter), and the
    public id of the result it made."""
    from quizapp.payments.providers import completed_event, sign_payload, webhook_secret

    client = app.test_client()
    answer_all(client, app.extensions["quiz_content"])
    review = client.get("/review")
    seen: dict[str, list[str]] = {}

    def step(name, send, wanted):
        counter.take()
        response = send()
        seen[name] = counter.take()
        assert response.status_code == wanted, (name, response.status_code, response.data[:300])
        return response

    token = csrf_token(review)
    submitted = step("submit", lambda: client.post("/submit", data={"csrf_token": token}), 303)
    public_id = submitted.headers["Location"].rsplit("/", 1)[-1]
    step("submit_again", lambda: client.post("/submit", data={"csrf_token": token}), 303)
    page = step("result", lambda: client.get(f"/r/{public_id}"), 200)
    token = csrf_token(page)
    form = {"csrf_token": token, "email": "walker@example.org"}
    step("email", lambda: client.post(f"/r/{public_id}/email", data=form), 303)
    form = {"csrf_token": token, "public_id": public_id}
    checkout = step("checkout", lambda: client.post("/pay/checkout", data=form), 303)
    session_id = checkout.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    payload = completed_event(
        session_id, public_id, app.config["STRIPE_PRICE_CENTS"], email="walker@example.org"
    )
    signature = sign_payload(payload, webhook_secret(app.config), int(time.time()))
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
    step("webhook", lambda: client.post("/pay/webhook", data=payload, headers=headers), 200)
    step("receipt", lambda: client.get(f"/pay/receipt/{public_id}"), 200)
    step("readyz", lambda: client.get("/readyz"), 200)
    return seen, public_id
