"""A visitor who has not started the quiz stores no session; /start is protected without one;
the request pipeline is declared in one place."""

from __future__ import annotations

import pytest

from devstack.quiz_walk import csrf_from
from quizapp import _declare_request_pipeline


def test_a_thousand_cookieless_visits_store_no_session(make_app, redis_client):
    # 1,000 arrivals in a few seconds: unpaced admissions (pacing: tests/test_admission_pace.py).
    app = make_app(RATELIMIT_VISITOR_PAGES="100000/minute", ADMISSION_PACE_PER_SECOND="off")
    before = set(redis_client.keys("*"))
    for _ in range(1000):
        response = app.test_client().get("/")  # a new client each time: no cookies at all
        assert response.status_code == 200 and b'name="csrf_token"' in response.data
        assert "bizmodel.sid" not in response.headers.get("Set-Cookie", "")
    new_keys = set(redis_client.keys("*")) - before
    # Counters only, plus the waiting room's two cluster-wide keys (adm:state, adm:active).
    assert not [k for k in new_keys if not k.startswith((b"LIMITS:", b"adm:"))], new_keys
    assert len(new_keys) <= 8 + 2  # this address's counters (current and previous windows)
    assert redis_client.keys("s:*") == []
    print(f"redis keys after 1,000 cookieless GETs: {len(before)} -> {len(before | new_keys)}")


def test_start_is_protected_by_a_signed_double_submit_token(make_app, redis_client):
    app = make_app()
    visitor, attacker = app.test_client(), app.test_client()
    token = csrf_from(visitor.get("/"))
    forged = csrf_from(attacker.get("/"))
    assert visitor.post("/start").status_code == 400  # no token
    assert visitor.post("/start", data={"csrf_token": forged}).status_code == 400  # someone else's
    fresh = app.test_client()
    assert fresh.post("/start", data={"csrf_token": token}).status_code == 400  # no cookie with it
    assert redis_client.keys("s:*") == []
    response = visitor.post("/start", data={"csrf_token": token})
    assert response.status_code == 303 and len(redis_client.keys("s:*")) == 1
    # The token stays valid once the session exists: it belongs to the visitor, not the session.
    page = visitor.get(response.headers["Location"])
    assert csrf_from(page) == token


def test_a_shared_result_link_stores_no_session_for_its_reader(client, make_app, redis_client):
    from devstack.quiz_walk import answer_all, submit

    app = make_app()
    taker = app.test_client()
    answer_all(taker, app.extensions["quiz_content"])
    result = submit(taker).headers["Location"]
    sessions = set(redis_client.keys("s:*"))
    reader = app.test_client()
    assert reader.get(result).status_code == 200
    assert set(redis_client.keys("s:*")) == sessions


def test_the_request_pipeline_is_declared_in_order(app):
    names = [f.__name__ for f in app.before_request_funcs[None]]
    assert names == [
        "start_request",
        "begin_request",
        "check_request_limits",
        "require_session_store",
        "protect",
        "guard_admin_paths",
    ]
    after = [f.__name__ for f in reversed(app.after_request_funcs[None])]
    assert after == [
        "finish_response",
        "set_cookie",
        "add_rate_limit_headers",
        "log_storage_transition",
        "add_security_headers",
        "count_response",
    ]
    assert [f.__name__ for f in app.teardown_request_funcs[None]] == ["end_request"]
    app.before_request(lambda: None)  # an extension sneaking a hook in is refused at start-up
    with pytest.raises(RuntimeError, match="outside the declared pipeline"):
        _declare_request_pipeline(app)
