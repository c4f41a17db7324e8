"""Redis-backed sessions: cookie name and attributes, TTL in Redis, rolling refresh, outage page."""

import logging
import time

import msgspec
import redis

from devstack.processes import free_port
from tests.support.session_routes import add_session_routes


def _session_cookie(response) -> str | None:
    """The session's Set-Cookie header (admission may set its own cookie beside it)."""
    found = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("bizmodel.sid=")]
    return found[0] if found else None


def test_cookie_attributes_and_ttl(make_app, redis_client):
    app = make_app(CSRF_ENABLED="false")
    add_session_routes(app)
    client = app.test_client()
    response = client.post("/_t/remember")
    cookie = _session_cookie(response)
    assert cookie is not None
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    sid = cookie.split(";")[0].split("=", 1)[1]
    key = f"s:{sid}"
    ttl = redis_client.ttl(key)
    assert 24 * 3600 - 60 < ttl <= 24 * 3600
    assert client.get("/_t/recall").get_json() == {"answers": {"q1": 2}}
    assert len(redis_client.get(key)) < 400  # compact msgpack payload


def test_session_ttl_is_refreshed_on_activity_without_a_write_per_request(make_app, redis_client):
    app = make_app(CSRF_ENABLED="false", SESSION_REFRESH_SECONDS=300)
    add_session_routes(app)
    client = app.test_client()
    cookie = _session_cookie(client.post("/_t/remember"))
    key = "s:" + cookie.split(";")[0].split("=", 1)[1]
    redis_client.expire(key, 100)
    # Within the refresh interval a read costs no write: neither the key nor the cookie is touched.
    response = client.get("/_t/recall")
    assert response.get_json() == {"answers": {"q1": 2}}
    assert _session_cookie(response) is None and redis_client.ttl(key) <= 100
    # Once the interval has passed, activity renews the full lifetime of the key and the cookie.
    data = msgspec.msgpack.decode(redis_client.get(key))
    data["_rt"] = int(time.time()) - 301
    redis_client.set(key, msgspec.msgpack.encode(data), keepttl=True)
    response = client.get("/_t/recall")
    assert "Expires=" in (_session_cookie(response) or "")
    assert redis_client.ttl(key) > 24 * 3600 - 60
    assert msgspec.msgpack.decode(redis_client.get(key))["answers"] == {"q1": 2}


def test_a_changed_session_is_written_without_resending_the_cookie_it_already_has(make_app, redis_client):
    app = make_app(CSRF_ENABLED="false", SESSION_REFRESH_SECONDS=300)
    add_session_routes(app)

    @app.post("/_t/change/<int:value>")
    def change(value):
        from flask import session

        session["answers"] = {"q1": value}
        return "ok"

    @app.post("/_t/regenerate")
    def regenerate():
        from flask import current_app, session

        current_app.session_interface.regenerate(session)
        return "ok"

    client = app.test_client()
    first = _session_cookie(client.post("/_t/remember"))
    assert first is not None and "Expires=" in first  # a new session: its cookie goes out
    sid = first.split(";")[0].split("=", 1)[1]
    redis_client.expire(f"s:{sid}", 100)
    # An answer within the refresh interval: the data and the key's lifetime are renewed, and the
    # visitor's cookie, which names this session already, is not sent again.
    response = client.post("/_t/change/5")
    assert response.status_code == 200 and _session_cookie(response) is None
    assert msgspec.msgpack.decode(redis_client.get(f"s:{sid}"))["answers"] == {"q1": 5}
    assert redis_client.ttl(f"s:{sid}") > 24 * 3600 - 60
    assert client.get("/_t/recall").get_json() == {"answers": {"q1": 5}}
    # A new id (login, payment) is always sent, within the interval too; the old key is gone.
    renewed = _session_cookie(client.post("/_t/regenerate"))
    assert renewed is not None and renewed.split(";")[0].split("=", 1)[1] != sid
    assert redis_client.exists(f"s:{sid}") == 0
    assert client.get("/_t/recall").get_json() == {"answers": {"q1": 5}}
    # A cookie whose key has expired gets a fresh id with the next write, and its cookie.
    new_sid = renewed.split(";")[0].split("=", 1)[1]
    redis_client.delete(f"s:{new_sid}")
    fresh = _session_cookie(client.post("/_t/change/7"))
    assert fresh is not None and fresh.split(";")[0].split("=", 1)[1] not in (sid, new_sid)
    assert client.get("/_t/recall").get_json() == {"answers": {"q1": 7}}


def test_secure_cookie_when_configured(make_app):
    app = make_app(CSRF_ENABLED="false", SESSION_COOKIE_SECURE="true")
    add_session_routes(app)
    cookie = _session_cookie(app.test_client().post("/_t/remember"))
    assert "Secure" in cookie


def test_redis_down_gives_friendly_503(make_app):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT=0.5)
    add_session_routes(app)
    client = app.test_client()
    client.set_cookie("bizmodel.sid", "abc")
    response = client.get("/_t/recall", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert b"session store" in response.data and b"Traceback" not in response.data
    assert response.headers["Retry-After"]
    response = client.get("/_t/recall")
    assert response.status_code == 503
    # Liveness needs no Redis.
    assert client.get("/healthz").status_code == 200


def test_a_failed_session_write_is_a_503_logged_once_without_a_crash_report(make_app, caplog, monkeypatch):
    app = make_app(CSRF_ENABLED="false")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: Flask's handle_exception runs
    add_session_routes(app)
    client = app.test_client()
    assert client.post("/_t/remember").status_code == 200
    writes = []

    def dead_store(*args):  # Redis went away between the read and the write (a failover)
        writes.append(args)
        raise redis.exceptions.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(app.session_interface, "fast", dead_store)
    caplog.clear()
    response = client.post("/_t/remember", headers={"Accept": "text/html"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert b"session store" in response.data and b"Traceback" not in response.data
    assert len(writes) == 1  # the outage page's own finalizing did not try the dead store again
    unavailable = [r for r in caplog.records if r.getMessage() == "request.unavailable"]
    assert len(unavailable) == 1 and unavailable[0].levelno == logging.WARNING
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
