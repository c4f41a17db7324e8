"""Limits count people (sessions), addresses only as a crowd's ceiling; IPv6 counts by /64;
one Redis round trip per page view; the counters are limits' own."""

from __future__ import annotations

import secrets

import pytest
from limits import parse

from devstack.quiz_walk import answer_all, csrf_from, submit
from quizapp import redis_conn, redis_fast
from quizapp.security.addresses import address_group
from quizapp.security.limits import KEY_PREFIX, LIMITER_KEY, LimitRules


def _person(app, address="127.0.0.1"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    landing = client.get("/")
    assert client.post("/start", data={"csrf_token": csrf_from(landing)}).status_code == 303
    return client


def test_two_people_on_one_address_have_their_own_page_budget(make_app):
    app = make_app(RATELIMIT_DEFAULT="3/minute")
    first, second = _person(app), _person(app)
    assert [first.get("/review").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [second.get("/review").status_code for _ in range(3)] == [200, 200, 200]
    assert first.get("/").status_code == 200  # per page: another page has its own budget


def test_the_address_ceiling_holds_for_everyone_on_it(make_app):
    app = make_app(RATELIMIT_ADDRESS_PAGES="5/minute")
    first, second = _person(app), _person(app, address="127.0.0.1")
    # Each person's landing and /start already counted: 4 of 5 are spent.
    assert first.get("/review").status_code == 200
    assert second.get("/review").status_code == 429
    assert _person(app, address="127.0.0.9").get("/review").status_code == 200


def test_a_forged_session_cookie_is_a_visitor_without_a_session(make_app):
    app = make_app(RATELIMIT_VISITOR_PAGES="2/minute")
    codes = []
    for _ in range(3):
        client = app.test_client()
        client.set_cookie("bizmodel.sid", secrets.token_urlsafe(24))  # a fresh made-up id each time
        codes.append(client.get("/").status_code)
    assert codes == [200, 200, 429]


def test_ipv6_addresses_count_by_their_64_network(make_app):
    assert address_group("2001:db8:1:2::5") == address_group("2001:db8:1:2:ffff:1:2:3") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:3::5") == "2001:db8:1:3::/64"
    assert address_group("::ffff:192.0.2.7") == "192.0.2.7" and address_group("192.0.2.7") == "192.0.2.7"
    assert address_group("2001:db8::1", ipv6_prefix=48) == "2001:db8::/48"
    app = make_app(RATELIMIT_VISITOR_PAGES="2/minute")

    def visit(address):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return client.get("/").status_code

    assert [visit("2001:db8:1:2::5"), visit("2001:db8:1:2::6"), visit("2001:db8:1:2:a::7")] == [200, 200, 429]
    assert visit("2001:db8:1:3::5") == 200


def test_daily_quota_per_address_survives_new_cookies(make_app, pg_conn):
    app = make_app(QUIZ_ADDRESS_DAILY_QUOTA="2", RATELIMIT_ENABLED="false")
    content = app.extensions["quiz_content"]
    codes = []
    for _ in range(3):
        client = app.test_client()  # a new cookie jar: a new person, the same address
        answer_all(client, content)
        codes.append(submit(client).status_code)
    assert codes == [303, 303, 429]
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "127.0.0.5"
    answer_all(other, content)
    assert submit(other).status_code == 303


def test_one_redis_round_trip_per_question_page(make_app, monkeypatch):
    app = make_app()
    client = _person(app)
    page = client.get("/q/capital")
    assert page.status_code == 200
    calls = []
    redis_client = redis_conn.redis_client(app)
    original = redis_client.execute_command
    monkeypatch.setattr(
        redis_client, "execute_command", lambda *a, **k: calls.append(a[0]) or original(*a, **k)
    )
    # Every command on the lean path (redis_fast: limits, session write, admission), pipelined or
    # not, is packed once per send: a NOSCRIPT reload's retry included.
    packed = redis_fast._packed
    monkeypatch.setattr(redis_fast, "_packed", lambda args: calls.append(args[0]) or packed(args))
    for _ in range(5):
        assert client.get("/q/capital").status_code == 200
    assert calls == ["EVALSHA"] * 5  # limits and the session read together; nothing written
    calls.clear()
    response = client.post("/q/capital", data={"csrf_token": csrf_from(page), "choice": "1"})
    assert response.status_code == 303
    assert calls == ["EVALSHA", "SET"]  # an answer changes the session: one write


def test_counters_are_the_ones_flask_limiter_and_limits_read(make_app):
    app = make_app(RATELIMIT_VISITOR_PAGES="10/minute")
    client = app.test_client()
    for _ in range(3):
        client.get("/")
    limiter = app.extensions[LIMITER_KEY]
    item = parse("10/minute")
    stats = limiter.limiter.get_window_stats(item, KEY_PREFIX, "a:127.0.0.1", "visitor")
    assert stats.remaining == 7
    assert limiter.limiter.hit(item, KEY_PREFIX, "a:127.0.0.1", "visitor")  # and count together
    assert [client.get("/").status_code for _ in range(7)] == [200] * 6 + [429]


@pytest.mark.parametrize("method,expected", [("GET", "visitor"), ("POST", "new-session")])
def test_rules_for_a_request_without_a_session(app, method, expected):
    rules = LimitRules(app.config)
    scopes = {(e.group, e.scope) for e in rules.entries_for("quiz.landing", method)}
    assert ("2", expected) in scopes and ("0", "address-pages") in scopes
    assert ("1", "quiz.landing") in scopes and ("1", "pages") in scopes
