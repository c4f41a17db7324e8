"""Checkout end to end: offline provider with session regeneration, and Stripe against a local fake."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from gevent.pywsgi import WSGIServer

from tests.support.quiz_pages import answer_all, csrf_from, submit
from tests.support.servers import free_port


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
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/r/{public_id}/report")
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


class FakeStripe:
    """Answers POST /v1/checkout/sessions the way the Stripe API does (form-encoded in, JSON out)."""

    def __init__(self, fail=False):
        self.requests = []
        self.fail = fail
        self.server = WSGIServer(("127.0.0.1", free_port()), self.app, log=None, error_log=None)

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        self.requests.append((environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION"), parse_qs(body)))
        if self.fail:
            error = {"error": {"type": "invalid_request_error", "message": "No such price"}}
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [json.dumps(error).encode()]
        session = {
            "id": "cs_fake_123",
            "object": "checkout.session",
            "url": "https://pay.invalid/c/cs_fake_123",
        }
        start_response("200 OK", [("Content-Type", "application/json"), ("Request-Id", "req_1")])
        return [json.dumps(session).encode()]

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(timeout=1)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}"


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
    path, auth, form = fake.requests[0]
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
            response.status_code == 303
            and response.headers["Location"] == "https://pay.invalid/c/cs_fake_123"
        )
        assert rows == [("cs_fake_123", "stripe")]
        assert app.test_client().get("/pay/test/cs_fake_123").status_code == 404
