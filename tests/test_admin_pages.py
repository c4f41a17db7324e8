"""Admin pages: /admin/ lands on health, logout, status colours, confirmed actions, usable on a phone."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import session
from gevent.pywsgi import WSGIServer

from devstack.forms import csrf_token
from quizapp.health import heartbeat
from quizapp.metrics import worker_counters
from tests.support.admin_session import admin_session_fields
from tests.test_health_admin import _login

PHONE = Path(__file__).resolve().parent / "support" / "phone_check.py"


def _login_session():
    session.update(admin_session_fields(user="phone-admin"))


def test_admin_root_goes_to_the_health_page(client):
    assert client.get("/admin/").headers["Location"].startswith("/admin/login")
    _login(client)
    response = client.get("/admin/")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/health"


def test_health_page_has_logout_and_status_colours(app, client, redis_client):
    with app.app_context():
        heartbeat.publish(app)
    _login(client)
    html = client.get("/admin/health").get_data(as_text=True)
    assert 'class="health-score health-healthy"' in html
    assert 'action="/admin/logout"' in html and "Log out" in html
    with app.app_context():
        figures = heartbeat.collect_figures(app)
    figures.update(worker="x:2", pid=2, breaker="OPEN", limiter={"storage": "memory", "fallback": True})
    redis_client.hset(heartbeat.WORKER_KEY.format("x:2"), mapping={"figures": json.dumps(figures)})
    redis_client.zadd(heartbeat.WORKER_INDEX, {"x:2": time.time()})
    redis_client.delete("health:detailed:cache")
    html = client.get("/admin/health").get_data(as_text=True)
    assert 'class="health-score health-degraded"' in html and 'class="status-bad">OPEN' in html
    assert 'class="alert-item severity-warning"' in html
    token = csrf_token(html)
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/health").headers["Location"].startswith("/admin/login")


def test_an_action_runs_only_after_its_confirmation(app, client, pg_conn):
    _login(client)
    client.get("/no/such/page")
    token = csrf_token(client.get("/admin/health").get_data(as_text=True))
    response = client.post("/admin/health/actions", data={"action": "reset_errors", "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/health/confirm?action=reset_errors"
    assert worker_counters(app).window["4xx"] == 1
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_log")
        assert cur.fetchone()[0] == 0
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Yes: Reset error counters" in page and 'name="confirm" value="yes"' in page and "Cancel" in page
    assert client.get("/admin/health/confirm?action=drop_db").status_code == 404
    done = client.post(
        "/admin/health/actions",
        data={"action": "reset_errors", "csrf_token": csrf_token(page), "confirm": "yes"},
    )
    assert done.status_code == 302 and worker_counters(app).window["4xx"] == 0


@pytest.mark.integration
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_admin_pages_fit_a_phone(app):
    @app.get("/_test/admin-login")
    def admin_login():
        _login_session()
        return {"admin": True}

    with app.app_context():
        heartbeat.publish(app)  # the workers table has a row
    server = WSGIServer(("127.0.0.1", 0), app, log=None)  # this gevent process serves Chromium
    server.start()
    try:
        done = subprocess.run(  # noqa: S603
            [sys.executable, str(PHONE), f"http://127.0.0.1:{server.server_port}"],
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            cwd=PHONE.parent,
            env={k: v for k, v in os.environ.items() if not k.startswith("GEVENT")},
        )
    finally:
        server.stop()
    assert done.stdout, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["ok"], seen
    assert seen["landed_on"] == "/admin/health" and seen["logout_button"] == 1
    assert seen["health_width"] <= 375 and seen["confirm_width"] <= 375, seen
    assert seen["after_confirm"].startswith("/admin/health?done=reset_errors")
    assert seen["after_logout"] == "/admin/login"
