"""The admin health page: admin only, self-refreshing without JS, CSRF-protected audited actions."""

import time

from devstack.forms import csrf_token
from quizapp.health import actions, heartbeat
from quizapp.metrics import worker_counters
from tests.support.admin_session import forge_admin_session


def _login(client):
    forge_admin_session(client, user="ops-admin")


def test_health_page_needs_an_admin(client):
    response = client.get("/admin/health", headers={"Accept": "application/json"})
    assert response.status_code == 403


def test_health_page_shows_the_cluster_and_refreshes_itself(app, client):
    with app.app_context():
        heartbeat.publish(app)
    _login(client)
    response = client.get("/admin/health")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="5; url=/admin/health?refresh=auto">' in html
    assert "<script" not in html
    assert "Score <strong>100</strong>/100" in html
    assert heartbeat.heartbeat_state(app).worker_id.rsplit(":", 1)[1] in html


def test_action_without_csrf_token_is_refused(app, client, pg_conn):
    _login(client)
    response = client.post("/admin/health/actions", data={"action": "reset_errors"})
    assert response.status_code == 400
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_log")
        assert cur.fetchone()[0] == 0


def test_reset_errors_is_audited_and_applied(app, client, pg_conn, redis_client):
    _login(client)
    client.get("/no/such/page")
    client.get("/no/such/page")
    assert worker_counters(app).window["4xx"] == 2
    token = csrf_token(client.get("/admin/health").get_data(as_text=True))
    response = client.post(
        "/admin/health/actions", data={"action": "reset_errors", "csrf_token": token, "confirm": "yes"}
    )
    assert response.status_code == 302 and "done=reset_errors" in response.headers["Location"]
    assert worker_counters(app).window["4xx"] == 0
    assert redis_client.hget(heartbeat.ACTIONS_KEY, "reset_errors") == b"1"
    with pg_conn.cursor() as cur:
        cur.execute("SELECT actor, action, detail->>'generation' FROM audit_log")
        assert cur.fetchall() == [("ops-admin", "reset_errors", "1")]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Done: Reset error counters" in page and "ops-admin: reset_errors" in page


def test_unknown_action_is_a_404(app, client):
    _login(client)
    token = csrf_token(client.get("/admin/health").get_data(as_text=True))
    response = client.post("/admin/health/actions", data={"action": "drop_db", "csrf_token": token})
    assert response.status_code == 404


def test_other_workers_apply_an_action_once_on_their_heartbeat(make_app):
    admin_app, other = make_app(), make_app()
    with other.app_context():
        heartbeat.beat_once(other)
    other.test_client().get("/missing")
    assert worker_counters(other).window["4xx"] == 1
    client = admin_app.test_client()
    _login(client)
    token = csrf_token(client.get("/admin/health").get_data(as_text=True))
    client.post(
        "/admin/health/actions", data={"action": "reset_errors", "csrf_token": token, "confirm": "yes"}
    )
    assert worker_counters(other).window["4xx"] == 1  # not yet: its heartbeat has not run
    figures = heartbeat.beat_once(other)
    assert worker_counters(other).window["4xx"] == 0
    assert figures["applied"]["reset_errors"] == 1
    other.test_client().get("/missing")
    heartbeat.beat_once(other)  # the same generation is never applied twice
    assert worker_counters(other).window["4xx"] == 1


def test_every_action_is_audited_and_applied_here_at_once(app, client, pg_conn, redis_client):
    _login(client)
    for action in ("reset_ai_queue", "close_breakers", "reset_errors"):
        token = csrf_token(client.get("/admin/health").get_data(as_text=True))
        client.post("/admin/health/actions", data={"action": action, "csrf_token": token, "confirm": "yes"})
    state = heartbeat.heartbeat_state(app)
    assert state.applied == {
        "reset_ai_queue": 1,
        "close_breakers": 1,
        "reset_errors": 1,
    }
    published = heartbeat.live_workers(redis_client, app.config["HEARTBEAT_SECONDS"])
    assert published[0]["applied"] == state.applied
    with pg_conn.cursor() as cur:
        cur.execute("SELECT action FROM audit_log ORDER BY id")
        assert [row[0] for row in cur.fetchall()] == [
            "reset_ai_queue",
            "close_breakers",
            "reset_errors",
        ]


def test_only_the_admins_own_requests_count_as_activity(make_app):
    """The page's automatic reload (?refresh=auto) does not keep an unattended session alive."""
    app = make_app(ADMIN_IDLE_MINUTES="1")
    client = app.test_client()
    _login(client)
    with client.session_transaction() as session:
        session["admin_seen"] = seen = time.time() - 50
    for _ in range(3):
        assert client.get("/admin/health?refresh=auto").status_code == 200
    with client.session_transaction() as session:
        assert session["admin_seen"] == seen
        session["admin_seen"] = time.time() - 61  # ADMIN_IDLE_MINUTES=1 passed, refreshes only
    response = client.get("/admin/health?refresh=auto")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    # The admin's own visit does count.
    _login(client)
    with client.session_transaction() as session:
        session["admin_seen"] = time.time() - 50
    assert client.get("/admin/health").status_code == 200
    with client.session_transaction() as session:
        assert time.time() - session["admin_seen"] < 5


def test_each_action_declares_its_parts_the_cluster_part_runs_once(make_app, monkeypatch):
    for name, action in actions.ACTIONS.items():
        assert action.label and (action.on_cluster or action.in_each_worker), name
    calls = []
    probe = actions.ClusterAction(
        "Probe", on_cluster=lambda: calls.append("cluster"), in_each_worker=calls.append
    )
    monkeypatch.setitem(actions.ACTIONS, "close_breakers", probe)
    admin_app, other = make_app(), make_app()
    with other.app_context():
        heartbeat.beat_once(other)
    client = admin_app.test_client()
    _login(client)
    token = csrf_token(client.get("/admin/health").get_data(as_text=True))
    client.post(
        "/admin/health/actions", data={"action": "close_breakers", "csrf_token": token, "confirm": "yes"}
    )
    assert calls == ["cluster", admin_app]
    heartbeat.beat_once(other)
    heartbeat.beat_once(other)
    assert calls == ["cluster", admin_app, other]
