"""Security headers, request ids, CSRF page, body limit and the per-request log line."""

from __future__ import annotations

import logging
import re

import pytest
from flask import request, session

from quizapp.log_format import KeyValueFormatter

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'"
)


def _assert_security_headers(response):
    assert response.headers["Content-Security-Policy"] == EXPECTED_CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", response.headers["X-Request-ID"])


def _add_form_routes(app):
    @app.route("/_t/form", methods=["GET", "POST"])
    def form():
        session.setdefault("answers", {"q1": 3})
        return {"answers": session["answers"], "fields": len(request.form)}

    @app.post("/_t/ignores-body")
    def ignores_body():
        return {"ok": True}

    @app.get("/_t/boom")
    def boom():
        raise RuntimeError("unexpected")


@pytest.mark.parametrize("path", ["/healthz", "/admin/login", "/no/such/page", "/_t/boom"])
def test_security_headers_on_pages_and_error_pages(make_app, path):
    app = make_app()
    _add_form_routes(app)
    response = app.test_client().get(path, headers={"Accept": "text/html"})
    _assert_security_headers(response)
    assert "Strict-Transport-Security" not in response.headers
    if path in ("/no/such/page", "/_t/boom"):
        assert response.headers["X-Request-ID"].encode() in response.data


def test_hsts_only_over_https_from_a_trusted_proxy(make_app):
    behind = make_app(TRUSTED_PROXY_HOPS=1).test_client()
    secure = behind.get("/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.7"})
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    # Without a trusted proxy a client cannot claim HTTPS (or an address) by header.
    direct = make_app(TRUSTED_PROXY_HOPS=0).test_client()
    assert (
        "Strict-Transport-Security"
        not in direct.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers
    )
    assert "Strict-Transport-Security" in direct.get("/healthz", base_url="https://localhost").headers


def test_stripe_checkout_origin_allowed_as_form_action(make_app):
    app = make_app(PAYMENT_PROVIDER="stripe")
    csp = app.test_client().get("/healthz").headers["Content-Security-Policy"]
    assert "form-action 'self' https://checkout.stripe.com;" in csp


def test_request_id_kept_when_sane_and_replaced_when_not(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abcDEF12-34_5.6"}).headers["X-Request-ID"] == (
        "abcDEF12-34_5.6"
    )
    forged = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>" + "a" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["X-Request-ID"])
    assert client.get("/healthz").headers["X-Request-ID"] != client.get("/healthz").headers["X-Request-ID"]


def test_csrf_failure_is_a_friendly_400_that_keeps_the_session(make_app):
    app = make_app()  # CSRF on
    _add_form_routes(app)
    client = app.test_client()
    assert client.get("/_t/form").get_json()["answers"] == {"q1": 3}
    response = client.post(
        "/_t/form",
        data={"answer": "2"},
        headers={"Accept": "text/html", "Referer": "http://localhost/_t/form"},
    )
    assert response.status_code == 400
    assert b"This form has expired" in response.data and b"answers so far are kept" in response.data
    assert b'href="/_t/form"' in response.data
    _assert_security_headers(response)
    assert client.get("/_t/form").get_json()["answers"] == {"q1": 3}  # same session, same answers
    api = client.post("/_t/form", json={"a": 1}, headers={"Accept": "application/json"})
    assert api.status_code == 400 and api.get_json()["error"] == "This form has expired"


def test_body_over_the_limit_is_a_413_page(make_app):
    app = make_app(CSRF_ENABLED="false")
    _add_form_routes(app)
    client = app.test_client()
    big = "x" * (10 * 1024 * 1024 + 1)
    response = client.post("/_t/form", data={"answer": big}, headers={"Accept": "text/html"})
    assert response.status_code == 413
    assert b"larger than we accept (10 MB at most)" in response.data
    _assert_security_headers(response)
    # Refused before any view runs, even one that never reads its body.
    ignored = client.post("/_t/ignores-body", data=big.encode(), content_type="application/octet-stream")
    assert ignored.status_code == 413
    api = client.post("/_t/ignores-body", data=big.encode(), headers={"Accept": "application/json"})
    assert api.status_code == 413 and api.get_json()["status"] == 413
    assert client.post("/_t/form", data={"answer": "x" * 1000}).get_json()["fields"] == 1


def test_one_structured_log_line_per_request(make_app, caplog):
    caplog.set_level(logging.INFO, logger="quizapp.request")
    app = make_app()
    client = app.test_client()
    client.set_cookie("bizmodel.sid", "secret-session-id-123")
    client.get(
        "/no/such%0D%0AFAKE%20level=error/?email=someone@example.com",
        headers={"X-Request-ID": "req-12345678"},
    )
    lines = [r for r in caplog.records if r.name == "quizapp.request"]
    assert len(lines) == 1
    record = lines[0]
    assert (record.method, record.status, record.request_id) == ("GET", 404, "req-12345678")
    assert record.duration_ms >= 0
    text = KeyValueFormatter().format(record)
    assert "\n" not in text and "\r" not in text
    assert "route=- " in text and "FAKE" not in text  # the rule, never the path (no rule matched)
    assert "example.com" not in text and "secret-session-id" not in text


def test_formatter_redacts_secrets_and_escapes_input():
    record = logging.LogRecord("quizapp.x", logging.WARNING, __file__, 1, "user %s said %s", None, None)
    record.args = ("someone@example.com", "hi\nlevel=critical msg=forged")
    record.cookie = "bizmodel.sid=abcdef"
    record.note = "key sk_live_abcDEF123 and whsec_XYZ987 and Bearer tok.en and sk-proj-abcdefgh12"
    text = KeyValueFormatter().format(record)
    assert "\n" not in text
    assert "someone@example.com" not in text and "[email]" in text
    assert "hi\\nlevel=critical" in text
    assert "cookie=[redacted]" in text
    for secret in ("sk_live_abcDEF123", "whsec_XYZ987", "tok.en", "sk-proj-abcdefgh12"):
        assert secret not in text


def test_error_pages_render_once_and_carry_each_request_id(app):
    from quizapp.errors import ERROR_TEMPLATE
    from quizapp.slotted import CACHE_KEY

    client = app.test_client()
    first = client.get("/no-such-page", headers={"X-Request-ID": "first-request-0001"})
    second = client.get("/no-such-page", headers={"X-Request-ID": "second-request-0002"})
    assert first.status_code == second.status_code == 404
    assert b"first-request-0001" in first.data and b"second-request-0002" not in first.data
    assert b"second-request-0002" in second.data and b"\x00" not in second.data
    assert len(app.extensions[CACHE_KEY][ERROR_TEMPLATE]) == 1  # one render served both
    assert first.data.replace(b"first-request-0001", b"x") == second.data.replace(
        b"second-request-0002", b"x"
    )
