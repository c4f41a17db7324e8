"""Limits are applied by endpoint name: stricter for submit/email/login, none for the webhook."""

from __future__ import annotations

import pytest
from flask import Blueprint

from quizapp.extensions import csrf
from quizapp.security import limits

# Stand-ins named apart from the real blueprints, which may or may not exist in this checkout.
PROBE_LIMITS = {
    "probe_quiz.submit": "RATELIMIT_SUBMIT",
    "probe_quiz.email": "RATELIMIT_EMAIL",
    "probe_quiz.absent": "RATELIMIT_SUBMIT",
}


@pytest.fixture
def probe_names(monkeypatch):
    monkeypatch.setattr(limits, "ENDPOINT_LIMITS", PROBE_LIMITS)
    monkeypatch.setattr(limits, "UNLIMITED_ENDPOINTS", ("probe_payments.webhook",))
    monkeypatch.setattr(limits, "POLLED_ENDPOINTS", {})


def _app_with_probe_routes(make_app, **overrides):
    app = make_app(CSRF_ENABLED="false", **overrides)
    quiz = Blueprint("probe_quiz", __name__)
    payments = Blueprint("probe_payments", __name__)

    @quiz.route("/_probe/result/<token>/email", methods=["GET", "POST"])
    def email(token):
        return {"ok": True}

    @quiz.post("/_probe/submit")
    def submit():
        return {"ok": True}

    @payments.post("/_probe/payments/webhook")
    def webhook():
        return {"received": True}

    @quiz.get("/api/_probe/ping")
    def ping():
        return {"pong": True}

    csrf.exempt(webhook)
    app.register_blueprint(quiz)
    app.register_blueprint(payments)
    # What security.init_app does once the real blueprints are registered; absent names are skipped.
    applied = set(limits.apply_endpoint_limits(app))
    expected = {"probe_quiz.submit", "probe_quiz.email", "probe_payments.webhook"}
    assert applied == (expected if app.config["RATELIMIT_ENABLED"] else set())
    return app


def test_real_endpoints_that_exist_are_limited(make_app):
    app = make_app()
    present = [
        name
        for name in (*limits.ENDPOINT_LIMITS, *limits.POLLED_ENDPOINTS, *limits.UNLIMITED_ENDPOINTS)
        if name in app.view_functions
    ]
    assert "admin_auth.login" in present and "ai.analysis_json" in present
    assert app.extensions["quizapp.limited_endpoints"] == present


def test_email_capture_has_its_own_stricter_limit(make_app, probe_names):
    client = _app_with_probe_routes(make_app).test_client()
    codes = [client.post("/_probe/result/abc/email").status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2  # RATELIMIT_EMAIL 5/minute
    assert client.post("/_probe/submit").status_code == 200  # a different budget
    assert client.get("/_probe/result/abc/email").status_code == 200  # only POSTs are counted there


def test_webhook_is_exempt_from_the_page_limits(make_app, probe_names):
    app = _app_with_probe_routes(make_app, RATELIMIT_NEW_SESSIONS="3/minute")
    client = app.test_client()
    assert [client.post("/_probe/payments/webhook").status_code for _ in range(10)] == [200] * 10
    assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5
    for _ in range(5):
        with client.get("/static/css/site.css") as static:
            assert static.status_code == 200
    pages = [client.post("/_probe/submit").status_code for _ in range(4)]
    assert pages == [200, 200, 200, 429]  # a session-less POST counts as a possible new session


def test_api_429_is_json_with_rate_limit_headers(make_app, probe_names):
    client = _app_with_probe_routes(
        make_app, RATELIMIT_VISITOR_PAGES="2/minute", RATELIMIT_HEADERS_ON_SUCCESS="true"
    ).test_client()
    ok = client.get("/api/_probe/ping")
    assert ok.headers["X-RateLimit-Limit"] == "2" and ok.headers["X-RateLimit-Remaining"] == "1"
    client.get("/api/_probe/ping")
    refused = client.get("/api/_probe/ping")
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["status"] == 429 and body["error"] == "Slow down a little" and body["request_id"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["Content-Security-Policy"].startswith("default-src 'self'")
    # A visitor without a session has one budget for all pages, whichever page they ask for.
    page = client.get("/_probe/result/abc/email", headers={"Accept": "text/html"})
    assert page.status_code == 429
    assert b"Slow down a little" in page.data and b"<html" in page.data


def test_limits_can_be_switched_off(make_app, probe_names):
    app = _app_with_probe_routes(make_app, RATELIMIT_ENABLED="false")
    client = app.test_client()
    assert all(client.post("/_probe/result/abc/email").status_code == 200 for _ in range(8))


def test_refusals_carry_rate_limit_headers_even_when_successes_do_not(make_app, probe_names):
    client = _app_with_probe_routes(make_app, RATELIMIT_VISITOR_PAGES="1/minute").test_client()
    ok = client.get("/api/_probe/ping")
    assert ok.status_code == 200 and "X-RateLimit-Limit" not in ok.headers  # no extra round trip
    refused = client.get("/api/_probe/ping")
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Limit"] == "1" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > 0


def test_analysis_poll_has_its_own_limit_instead_of_the_page_default(make_app):
    app = make_app(RATELIMIT_DEFAULT="2/minute", RATELIMIT_POLL="4/minute")
    client = app.test_client()
    codes = [client.get("/api/analysis/unknown-subject").status_code for _ in range(5)]
    assert codes == [404, 404, 404, 404, 429]  # 4 polls allowed, not the page default's 2
