"""Checkout end to end: offline provider with session regeneration, and Stripe against a local fake."""

from __future__ import annotations

import gevent
import pytest

from devstack.fake_stripe import FakeStripe
from devstack.quiz_walk import answer_all, csrf_from, submit
from tests.support.admin_session import forge_admin_session
from tests.support.payments import checkout_id, click_unlock, owned_result, pay

SECRET = "whsec_test_" + "c" * 24


def _result(app):
    client = app.test_client()
    answer_all(client, app.extensions["quiz_content"])
    return client, submit(client).headers["Location"].rsplit("/", 1)[-1]


def test_offline_checkout_unlocks_report_and_regenerates_session(app, pg_conn):
    client, public_id = _result(app)
    page = client.get(f"/r/{public_id}")
    assert b"Unlock the full report" in page.data
    response = client.post("/pay/checkout", data={"csrf_token": csrf_from(page), "public_id": public_id})
    assert response.status_code == 303 and "/pay/test/cs_test_" in response.headers["Location"]
    checkout = client.get(response.headers["Location"])
    assert checkout.status_code == 200 and b"Test mode" in checkout.data and b"9.00" in checkout.data
    sid_before = client.get_cookie("bizmodel.sid").value
    response = client.post(response.headers["Location"], data={"csrf_token": csrf_from(checkout)})
    assert response.status_code == 303 and f"/pay/return/{public_id}" in response.headers["Location"]
    response = client.get(response.headers["Location"])
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/pay/receipt/{public_id}")
    sid_after = client.get_cookie("bizmodel.sid").value
    assert sid_after != sid_before
    # The quiz state moved to the new session id; the old id is gone.
    assert b"See your last result" in client.get("/").data
    stale = app.test_client()
    stale.set_cookie("bizmodel.sid", sid_before)
    assert b"See your last result" not in stale.get("/").data
    report = client.get(f"/r/{public_id}/report")
    assert report.status_code == 200 and b"Your full report" in report.data and b"First steps" in report.data
    assert b"Open the full report" in client.get(f"/r/{public_id}").data
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*), min(provider), min(amount_cents) FROM payments")
        assert cur.fetchone() == (1, "test", 900)


def test_checkout_refuses_unknown_and_paid_results(app):
    client, public_id = _result(app)
    token = csrf_from(client.get(f"/r/{public_id}"))
    assert client.post("/pay/checkout", data={"csrf_token": token, "public_id": "nope"}).status_code == 404
    location = client.post("/pay/checkout", data={"csrf_token": token, "public_id": public_id}).headers[
        "Location"
    ]
    client.post(location, data={"csrf_token": token})
    assert client.post("/pay/checkout", data={"csrf_token": token, "public_id": public_id}).status_code == 409
    assert client.get("/pay/test/cs_test_unknown").status_code == 404


def test_return_before_webhook_shows_pending(app):
    client, public_id = _result(app)
    response = client.get(f"/pay/return/{public_id}")
    assert response.status_code == 202 and b"Confirming your payment" in response.data


@pytest.mark.parametrize("fail", [False, True])
def test_stripe_provider_creates_a_checkout_session(make_app, pg_conn, fail):
    with FakeStripe(fail=fail) as fake:
        app = make_app(
            PAYMENT_PROVIDER="stripe",
            STRIPE_SECRET_KEY="sk_test_fake",
            STRIPE_API_BASE=fake.url,
        )
        client, public_id = _result(app)
        token = csrf_from(client.get(f"/r/{public_id}"))
        response = client.post("/pay/checkout", data={"csrf_token": token, "public_id": public_id})
    path, auth, form, key = fake.requests[0]
    assert path == "/v1/checkout/sessions" and auth == "Bearer sk_test_fake"
    assert form["client_reference_id"] == [public_id] and form["mode"] == ["payment"]
    assert form["line_items[0][price_data][unit_amount]"] == ["900"]
    assert form["success_url"][0].endswith(f"/pay/return/{public_id}?session_id={{CHECKOUT_SESSION_ID}}")
    with pg_conn.cursor() as cur:
        cur.execute("SELECT id, provider FROM checkout_sessions")
        rows = cur.fetchall()
    if fail:
        assert response.status_code == 503 and b"payment provider" in response.data and rows == []
    else:
        assert (
            response.status_code == 303 and response.headers["Location"] == "https://pay.invalid/c/cs_fake_1"
        )
        assert rows == [("cs_fake_1", "stripe")] and key.startswith("quizapp-checkout-")
        assert app.test_client().get("/pay/test/cs_fake_1").status_code == 404


def _stripe_app(make_app, fake):
    return make_app(
        PAYMENT_PROVIDER="stripe",
        STRIPE_SECRET_KEY="sk_test_fake",
        STRIPE_API_BASE=fake.url,
        STRIPE_WEBHOOK_SECRET=SECRET,
    )


def test_five_concurrent_unlock_clicks_make_one_stripe_checkout(make_app, pg_conn):
    with FakeStripe(create_delay=0.3) as fake:
        app = _stripe_app(make_app, fake)
        client, public_id = owned_result(app)
        jobs = [gevent.spawn(click_unlock, client, public_id) for _ in range(5)]
        gevent.joinall(jobs, raise_error=True)
    keys = {key for path, _, _, key in fake.requests if path == "/v1/checkout/sessions"}
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM checkout_sessions")
        stored = cur.fetchone()[0]
    print(
        f"[figure] 5 concurrent Unlock posts (Stripe wire fake) -> {len(fake.sessions)} provider session, "
        f"{stored} stored, {len(keys)} idempotency key"
    )
    assert {job.value.headers["Location"] for job in jobs} == {"https://pay.invalid/c/cs_fake_1"}
    assert len(fake.sessions) == 1 and stored == 1 and len(keys) == 1


@pytest.mark.parametrize("refund_fails", [False, True])
def test_second_stripe_payment_is_refunded_or_shown_to_the_admin(make_app, pg_conn, refund_fails):
    with FakeStripe(fail_refunds=refund_fails) as fake:
        app = _stripe_app(make_app, fake)
        client, public_id = owned_result(app)
        first = checkout_id(click_unlock(client, public_id))
        with pg_conn.cursor() as cur:
            cur.execute("UPDATE checkout_sessions SET expires_at = now() WHERE id = %s", (first,))
        second = checkout_id(click_unlock(client, public_id))
        outcomes = [
            pay(client, SECRET, cs, public_id, payment_intent=f"pi_{cs}").get_json()["outcome"]
            for cs in (first, second)
        ]
        assert outcomes == ["unlocked", "refund_failed" if refund_fails else "refunded"]
        admin = app.test_client()
        forge_admin_session(admin, user="ops")
        page = admin.get("/admin/payments")
        if refund_fails:
            assert b"refund_failed" in page.data and b"/admin/payments/" in page.data
            fake.fail_refunds = False
            token = csrf_from(page)
            action = admin.post("/admin/payments/2/refund", data={"csrf_token": token})
            assert action.status_code == 302
            assert b"None: every payment is settled" in admin.get("/admin/payments").data
        else:
            assert b"None: every payment is settled" in page.data
    assert [r["payment_intent"] for r in fake.refunds] == [f"pi_{second}"]
    assert fake.refunds[0]["reason"] == "duplicate"
    refund_keys = {key for path, _, _, key in fake.requests if path == "/v1/refunds"}
    assert "quizapp-refund-2" in refund_keys and len(refund_keys) == (2 if refund_fails else 1)
    with pg_conn.cursor() as cur:
        cur.execute("SELECT checkout_session_id, status FROM payments ORDER BY id")
        assert cur.fetchall() == [(first, "kept"), (second, "refunded")]
        cur.execute("SELECT count(*) FROM quiz_attempts WHERE paid_at IS NOT NULL")
        assert cur.fetchone() == (1,)
