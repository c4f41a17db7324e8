"""Limits are applied by endpoint name: stricter for submit/email/login, none for the webhook."""

from __future__ import annotations

from flask import Blueprint

from quizapp.extensions import csrf
from quizapp.security import limits


def _app_with_quiz_and_payment_routes(make_app, **overrides):
    app = make_app(CSRF_ENABLED="false", **overrides)
    quiz = Blueprint("quiz", __name__)
    payments = Blueprint("payments", __name__)

    @quiz.route("/result/<token>/email", methods=["GET", "POST"])
    def email(token):
        return {"ok": True}

    @quiz.post("/submit")
    def submit():
        return {"ok": True}

    @payments.post("/payments/webhook")
    def webhook():
        return {"received": True}

    @quiz.get("/api/quiz/ping")
    def ping():
        return {"pong": True}

    csrf.exempt(webhook)
    app.register_blueprint(quiz)
    app.register_blueprint(payments)
    # What security.init_app does once the real blueprints are registered.
    applied = set(limits.apply_endpoint_limits(app))
    expected = {"quiz.submit", "quiz.email", "admin_auth.login", "payments.webhook"}
    assert applied == (expected if app.config["RATELIMIT_ENABLED"] else set())
    return app


def test_email_capture_has_its_own_stricter_limit(make_app):
    client = _app_with_quiz_and_payment_routes(make_app).test_client()
    codes = [client.post("/result/abc/email").status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2  # RATELIMIT_EMAIL 5/minute
    assert client.post("/submit").status_code == 200  # a different budget
    assert client.get("/result/abc/email").status_code == 200  # only POSTs are counted there


def test_webhook_is_exempt_from_the_per_ip_page_limit(make_app):
    app = _app_with_quiz_and_payment_routes(make_app, RATELIMIT_DEFAULT="3/minute")
    client = app.test_client()
    assert [client.post("/payments/webhook").status_code for _ in range(10)] == [200] * 10
    assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5
    for _ in range(5):
        with client.get("/static/css/site.css") as static:
            assert static.status_code == 200
    pages = [client.post("/submit").status_code for _ in range(4)]
    assert pages == [200, 200, 200, 429]  # submit also counts against the page default


def test_api_429_is_json_with_rate_limit_headers(make_app):
    client = _app_with_quiz_and_payment_routes(make_app, RATELIMIT_DEFAULT="2/minute").test_client()
    ok = client.get("/api/quiz/ping")
    assert ok.headers["X-RateLimit-Limit"] == "2" and ok.headers["X-RateLimit-Remaining"] == "1"
    client.get("/api/quiz/ping")
    refused = client.get("/api/quiz/ping")
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["status"] == 429 and body["error"] == "Slow down a little" and body["request_id"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["Content-Security-Policy"].startswith("default-src 'self'")
    # The page default counts per client and page: this page has its own 2/minute.
    pages = [client.get("/result/abc/email", headers={"Accept": "text/html"}) for _ in range(3)]
    assert [p.status_code for p in pages] == [200, 200, 429]
    page = pages[-1]
    assert page.status_code == 429 and b"Slow down a little" in page.data and b"<html" in page.data


def test_limits_can_be_switched_off(make_app):
    app = _app_with_quiz_and_payment_routes(make_app, RATELIMIT_ENABLED="false")
    client = app.test_client()
    assert all(client.post("/result/abc/email").status_code == 200 for _ in range(8))
