"""Webhook verification matrix, checks against the created checkout, exactly-once unlocks, refunds."""

from __future__ import annotations

import json
import time

import gevent
import pytest

from quizapp.payments.providers import completed_event, sign_payload, webhook_secret
from tests.support.payments import checkout_id, click_unlock, counts, owned_result, pay, post_event

SECRET = "whsec_test_" + "s" * 24
NOTHING = {"payments": 0, "paid": 0, "completed": 0, "mails": 0, "subscribers": 0}


@pytest.fixture
def paid_app(make_app):
    return make_app(STRIPE_WEBHOOK_SECRET=SECRET)


@pytest.fixture
def checkout(paid_app):
    """(public_id, checkout session id) of an owned result with one open offline checkout."""
    client, public_id = owned_result(paid_app)
    return public_id, checkout_id(click_unlock(client, public_id))


def _without_audit(pg_conn):
    return {k: v for k, v in counts(pg_conn).items() if k != "audit"}


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("valid", 200),
        ("wrong_secret", 400),
        ("stale_timestamp", 400),
        ("future_timestamp_within_tolerance", 200),
        ("future_timestamp_outside_tolerance", 400),
        ("missing_header", 400),
        ("garbled_header", 400),
        ("tampered_payload", 400),
    ],
)
def test_signature_matrix(paid_app, checkout, pg_conn, case, status):
    public_id, session_id = checkout
    payload = completed_event(session_id, public_id, 900)
    now = int(time.time())
    signature = {
        "valid": sign_payload(payload, SECRET),
        "wrong_secret": sign_payload(payload, "whsec_someone_else"),
        "stale_timestamp": sign_payload(payload, SECRET, now - 301),
        "future_timestamp_within_tolerance": sign_payload(payload, SECRET, now + 30),
        "future_timestamp_outside_tolerance": sign_payload(payload, SECRET, now + 3600),
        "missing_header": "",
        "garbled_header": "t=abc,v1=",
        "tampered_payload": sign_payload(payload.replace('"amount_total":900', '"amount_total":1'), SECRET),
    }[case]
    response = post_event(paid_app.test_client(), payload, SECRET, signature=signature)
    assert response.status_code == status and b"Traceback" not in response.data
    paid = 1 if status == 200 else 0
    assert counts(pg_conn)["payments"] == paid and counts(pg_conn)["paid"] == paid


def test_replay_unlocks_once(paid_app, checkout, pg_conn):
    public_id, session_id = checkout
    client = paid_app.test_client()
    payload = completed_event(session_id, public_id, 900)
    signature = sign_payload(payload, SECRET)
    outcomes = [
        post_event(client, payload, SECRET, signature=signature).get_json()["outcome"] for _ in range(3)
    ]
    # Another event id for the same checkout session (Stripe sends several kinds) is no new payment.
    again = pay(client, SECRET, session_id, public_id).get_json()["outcome"]
    assert outcomes + [again] == ["unlocked", "duplicate", "duplicate", "duplicate"]
    assert counts(pg_conn)["payments"] == 1 and counts(pg_conn)["paid"] == 1


def test_twenty_parallel_identical_webhooks_record_one_payment(paid_app, checkout, pg_conn):
    public_id, session_id = checkout
    payload = completed_event(session_id, public_id, 900)
    signature = sign_payload(payload, SECRET)
    jobs = [
        gevent.spawn(post_event, paid_app.test_client(), payload, SECRET, signature=signature)
        for _ in range(20)
    ]
    gevent.joinall(jobs, raise_error=True)
    assert [job.value.status_code for job in jobs] == [200] * 20
    outcomes = sorted(job.value.get_json()["outcome"] for job in jobs)
    assert outcomes == ["duplicate"] * 19 + ["unlocked"]
    assert counts(pg_conn)["payments"] == 1 and counts(pg_conn)["paid"] == 1


@pytest.mark.parametrize(
    ("case", "reasons", "action"),
    [
        ("unknown_session", ["unknown_checkout_session"], "payment.mismatch"),
        ("other_attempt", ["other_attempt"], "payment.mismatch"),
        ("amount", ["amount"], "payment.mismatch"),
        ("currency", ["currency"], "payment.mismatch"),
        ("not_paid", ["not_paid"], "payment.not_paid"),
    ],
)
def test_a_mismatch_writes_nothing_but_the_audit_entry(paid_app, checkout, pg_conn, case, reasons, action):
    public_id, session_id = checkout
    _, other_id = owned_result(paid_app)
    before = _without_audit(pg_conn)
    event = {
        "unknown_session": dict(session_id="cs_never_created", public_id=public_id),
        "other_attempt": dict(session_id=session_id, public_id=other_id),
        "amount": dict(session_id=session_id, public_id=public_id, amount=1),
        "currency": dict(session_id=session_id, public_id=public_id, currency="jpy"),
        "not_paid": dict(session_id=session_id, public_id=public_id, payment_status="unpaid"),
    }[case]
    client = paid_app.test_client()
    response = pay(client, SECRET, email="buyer@example.org", **event)
    assert response.status_code == 200  # acknowledged: a retry would not make it match
    assert response.get_json()["outcome"] == ("not_paid" if case == "not_paid" else "mismatch")
    assert _without_audit(pg_conn) == before == {**NOTHING, "subscribers": 0}
    with pg_conn.cursor() as cur:
        cur.execute("SELECT actor, action, detail FROM audit_log")
        rows = cur.fetchall()
    assert [(r[0], r[1], r[2]["reasons"]) for r in rows] == [("webhook", action, reasons)]
    assert client.get(f"/r/{public_id}/report").status_code == 403
    mismatches = 0 if case == "not_paid" else 1
    with paid_app.test_request_context():
        from quizapp.payments import service

        assert service.payment_figures() == {"mismatches_24h": mismatches, "refunds_pending": 0}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: [e],
        lambda e: e["data"]["object"].update(client_reference_id=12345),
        lambda e: e.update(data="nope"),
        lambda e: e["data"].update(object=[1, 2]),
        lambda e: e["data"]["object"].update(amount_total="900"),
        lambda e: e["data"]["object"].update(amount_total=True),
        lambda e: e["data"]["object"].update(metadata="x"),
        lambda e: e["data"]["object"].update(customer_details=["x"]),
        lambda e: e.pop("id"),
        lambda e: e.update(type=7),
        lambda e: "just a string",
    ],
    ids=[
        "list",
        "int_reference",
        "data_str",
        "object_list",
        "amount_str",
        "amount_bool",
        "metadata_str",
        "customer_list",
        "no_id",
        "type_int",
        "string",
    ],
)
def test_signed_but_malformed_payloads_get_400(paid_app, checkout, pg_conn, mutate):
    public_id, session_id = checkout
    event = json.loads(completed_event(session_id, public_id, 900))
    replaced = mutate(event)
    payload = json.dumps(replaced if replaced is not None else event)
    response = post_event(paid_app.test_client(), payload, SECRET)
    assert response.status_code == 400 and b"Traceback" not in response.data
    assert _without_audit(pg_conn) == NOTHING


def test_other_events_are_acknowledged_and_expiry_frees_a_new_checkout(paid_app, pg_conn):
    client, public_id = owned_result(paid_app)
    first = checkout_id(click_unlock(client, public_id))
    event = json.loads(completed_event(first, public_id, 900))
    event["type"] = "payment_intent.created"
    other = json.dumps(event)
    assert post_event(client, other, SECRET).get_json()["outcome"] == "ignored"
    event["type"] = "checkout.session.expired"
    expired = json.dumps(event)
    assert post_event(client, expired, SECRET).get_json()["outcome"] == "expired"
    second = checkout_id(click_unlock(client, public_id))
    assert second != first and checkout_id(click_unlock(client, public_id)) == second
    assert counts(pg_conn)["payments"] == 0


def test_five_concurrent_unlock_clicks_open_one_checkout(paid_app, pg_conn):
    client, public_id = owned_result(paid_app)
    jobs = [gevent.spawn(click_unlock, client, public_id) for _ in range(5)]
    gevent.joinall(jobs, raise_error=True)
    locations = {job.value.headers["Location"] for job in jobs}
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM checkout_sessions")
        sessions = cur.fetchone()[0]
    print(f"[figure] 5 concurrent Unlock posts (offline provider) -> {sessions} checkout session")
    assert len(locations) == 1 and sessions == 1


def test_a_second_completed_payment_is_refunded(paid_app, pg_conn):
    """Two checkouts paid for one attempt (an old tab after expiry): one unlock, one refund."""
    client, public_id = owned_result(paid_app)
    first = checkout_id(click_unlock(client, public_id))
    with pg_conn.cursor() as cur:
        cur.execute("UPDATE checkout_sessions SET expires_at = now() WHERE id = %s", (first,))
    second = checkout_id(click_unlock(client, public_id))
    outcomes = [pay(client, SECRET, cs, public_id).get_json()["outcome"] for cs in (first, second, second)]
    assert outcomes == ["unlocked", "refunded", "duplicate"]
    with pg_conn.cursor() as cur:
        cur.execute("SELECT checkout_session_id, status, refund_id IS NOT NULL FROM payments ORDER BY id")
        assert cur.fetchall() == [(first, "kept", False), (second, "refunded", True)]
        cur.execute("SELECT action FROM audit_log")
        assert cur.fetchall() == [("payment.refunded",)]
    assert counts(pg_conn)["paid"] == 1


def test_dev_secret_is_derived_from_secret_key(make_app):
    app = make_app(STRIPE_WEBHOOK_SECRET="", SECRET_KEY="k" * 32)
    other = make_app(STRIPE_WEBHOOK_SECRET="", SECRET_KEY="j" * 32)
    assert webhook_secret(app.config).startswith("whsec_dev_")
    assert webhook_secret(app.config) != webhook_secret(other.config)
    assert webhook_secret(app.config) == webhook_secret(make_app(SECRET_KEY="k" * 32).config)


def test_admin_health_page_shows_the_mismatch_alert(paid_app, checkout, pg_conn):
    public_id, session_id = checkout
    pay(paid_app.test_client(), SECRET, session_id, public_id, amount=1)
    admin = paid_app.test_client()
    with admin.session_transaction() as session:
        session.update(admin=True, admin_seen=time.time(), admin_user="ops")
    page = admin.get("/admin/health").data.decode()
    assert "1 payment webhooks did not match their checkout (24 h)" in page
    assert "dead letters: 0" in page
