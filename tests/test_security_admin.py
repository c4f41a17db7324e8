"""Admin login: password hash, rate limit, new session id, idle timeout, logout, audit trail."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg2.extras
import pytest
from flask import jsonify
from werkzeug.security import generate_password_hash

from devstack.forms import csrf_token
from quizapp.admin.auth import admin_required
from quizapp.config import ConfigError

PASSWORD = "correct horse battery staple"


@pytest.fixture
def admin_app(make_app):
    app = make_app(ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD), ADMIN_IDLE_MINUTES=1)
    # Probe routes of this module's own (the admin guard); test_security_endpoints has its own for limits.

    # Probe routes: alike in shape to test_security_endpoints.py's, each test file declares its own.
    @app.get("/admin/probe")
    @admin_required
    def admin_probe():
        return {"admin": True}

    @app.get("/admin/forgot-the-decorator")
    def admin_undecorated():
        return {"admin": True}

    @app.get("/api/admin/probe")
    def admin_api_probe():
        return jsonify(admin=True)

    return app


def _token(client, path="/admin/login"):
    page = client.get(path)
    return csrf_token(page)


def _sid(client):
    cookie = client.get_cookie("bizmodel.sid")
    return cookie.value if cookie else None


def _login(client, password=PASSWORD, next_url="/admin/probe"):
    return client.post(
        "/admin/login", data={"csrf_token": _token(client), "password": password, "next": next_url}
    )


def _audit(pg_conn):
    with pg_conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT actor, action, detail FROM audit_log ORDER BY id")
        return cur.fetchall()


def test_admin_pages_need_a_login(admin_app):
    client = admin_app.test_client()
    for path in ("/admin/probe", "/admin/forgot-the-decorator"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/login?next=/admin/")
    api = client.get("/api/admin/probe")
    assert api.status_code == 403 and api.get_json()["error"] == "Not allowed"


def test_login_regenerates_the_session_and_is_audited(admin_app, pg_conn):
    client = admin_app.test_client()
    token = _token(client)
    assert _sid(client) is None  # the login page alone stores no session
    client.post("/start", data={"csrf_token": token})  # a session from before the login
    before = _sid(client)
    assert before
    response = client.post(
        "/admin/login", data={"csrf_token": token, "password": PASSWORD, "next": "/admin/probe"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/probe"
    after = _sid(client)
    assert after and after != before
    assert client.get("/admin/probe").get_json() == {"admin": True}
    assert client.get("/admin/forgot-the-decorator").status_code == 200
    assert client.get("/api/admin/probe").status_code == 200

    token = _token(client)
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/probe").status_code == 302
    rows = _audit(pg_conn)
    assert [(r["actor"], r["action"]) for r in rows] == [("admin", "admin.login"), ("admin", "admin.logout")]
    assert rows[0]["detail"] == {"ip": "127.0.0.1"}


def test_wrong_password_refused_and_audited(admin_app, pg_conn):
    client = admin_app.test_client()
    response = _login(client, password="not it")
    assert response.status_code == 401 and b"not right" in response.data
    assert client.get("/admin/probe").status_code == 302
    assert [r["action"] for r in _audit(pg_conn)] == ["admin.login_failed"]


def test_open_redirect_is_not_followed(admin_app):
    client = admin_app.test_client()
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/\t/evil.example"):
        client.post("/admin/logout", data={"csrf_token": _token(client)})
        assert _login(client, next_url=target).headers["Location"] == "/admin/"


def test_login_is_rate_limited(admin_app):
    client = admin_app.test_client()
    token = _token(client)
    codes = [
        client.post("/admin/login", data={"csrf_token": token, "password": "guess"}).status_code
        for _ in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2  # RATELIMIT_LOGIN 5/minute


def test_idle_admin_session_expires(admin_app):
    client = admin_app.test_client()
    _login(client)
    assert client.get("/admin/probe").status_code == 200
    with client.session_transaction() as sess:
        sess["admin_seen"] = time.time() - 61  # ADMIN_IDLE_MINUTES=1
    assert client.get("/admin/probe").status_code == 302
    with client.session_transaction() as sess:
        assert "admin" not in sess
    assert client.get("/admin/probe").status_code == 302


def test_login_disabled_without_a_hash(make_app):
    client = make_app().test_client()
    page = client.get("/admin/login")
    assert page.status_code == 403 and b"ADMIN_PASSWORD_HASH" in page.data and b"<form" not in page.data
    assert client.get("/admin/probe").status_code == 404


def test_invalid_hash_stops_start_up(make_app):
    with pytest.raises(ConfigError, match="ADMIN_PASSWORD_HASH"):
        make_app(ADMIN_PASSWORD_HASH="plaintext-password")


def test_hash_password_helper_prints_a_working_hash():
    from werkzeug.security import check_password_hash

    result = subprocess.run(
        [sys.executable, "-m", "quizapp.admin.hash_password"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert check_password_hash(result.stdout.strip(), PASSWORD)


@pytest.mark.parametrize("bad", ["pbkdf2:sha256$only-salt", "md5$salt$hash", "scrypt:bogus$salt$hash"])
def test_malformed_hashes_stop_start_up(make_app, bad):
    with pytest.raises(ConfigError, match="ADMIN_PASSWORD_HASH"):
        make_app(ADMIN_PASSWORD_HASH=bad)
