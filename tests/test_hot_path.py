"""The hot path's shortcuts give exactly what the library code they replace gives."""

from __future__ import annotations

import pytest
from flask import Flask, Request, Response
from flask_session.redis import RedisSession

from quizapp.request_form import PARSED_COOKIES_MAX_CHARS, QuizRequest
from quizapp.responses import QuizResponse
from quizapp.sessions import ReadRedisSession

COOKIE_HEADERS = [
    "",
    "bizmodel.sid=abc; bizmodel.csrf=Zm9v; qa.adm=s.0.123.sig",
    'a="quoted value"; b=; c=1; c=2',
    "broken; =x; ok=1",
    "big=" + "v" * (PARSED_COOKIES_MAX_CHARS + 1),  # too long to keep: parsed each time
]


def _cookies(request_class, header: str):
    app = Flask(__name__)
    app.request_class = request_class
    with app.test_request_context("/", environ_overrides={"HTTP_COOKIE": header}):
        from flask import request

        return list(request.cookies.items(multi=True))


@pytest.mark.parametrize("header", COOKIE_HEADERS)
def test_cookies_as_werkzeug_parses_them(header):
    assert _cookies(QuizRequest, header) == _cookies(Request, header)
    assert _cookies(QuizRequest, header) == _cookies(Request, header)  # again, from the cache


def _responses():
    yield "page", lambda cls: cls("<p>é</p>", 200, headers={"X-Count": 3})
    yield "redirect", lambda cls: cls("", 303, headers={"Location": "/q/ünï?x=1 2"})
    yield "content-location", lambda cls: cls("x", 200, headers={"Content-Location": "/r/é"})
    yield "no content", lambda cls: cls("dropped", 204)
    yield "not modified", lambda cls: cls("", 304, headers={"Content-Type": "text/html", "ETag": '"1"'})
    yield "stream", lambda cls: cls(iter([b"a", b"b"]), 200)
    yield "informational", lambda cls: cls("", 103)


@pytest.mark.parametrize("name,build", list(_responses()), ids=[n for n, _ in _responses()])
def test_wsgi_headers_as_werkzeug_builds_them(name, build):
    app = Flask(__name__)
    with app.test_request_context("/"):
        environ = {
            "REQUEST_METHOD": "GET",
            "SERVER_NAME": "x",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        }
        ours = build(QuizResponse).get_wsgi_headers(environ)
        theirs = build(Response).get_wsgi_headers(environ)
    assert ours.to_wsgi_list() == theirs.to_wsgi_list()


@pytest.mark.parametrize(
    "data", [{}, {"_permanent": True}, {"a": 1}, {"_permanent": True, "a": 1}, {"a": 1, "b": 2}]
)
def test_a_read_sessions_truth_is_flask_sessions(data):
    assert bool(ReadRedisSession(dict(data))) is bool(RedisSession(dict(data)))


def test_question_page_and_answer_vary_on_cookie_once(client):
    landing = client.get("/")
    token = landing.get_data(as_text=True).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    started = client.post("/start", data={"csrf_token": token})
    path = started.headers["Location"]
    page = client.get(path)
    assert page.status_code == 200 and page.headers.getlist("Vary") == ["Cookie"]
    answered = client.post(path, data={"csrf_token": token, "choice": "1"})
    assert answered.status_code == 303 and answered.headers.getlist("Vary") == ["Cookie"]
    assert answered.headers["Location"].startswith("/q/") and answered.headers["Location"] != path
    # The start sent the session's cookie; an answer changes the data, not the id: no cookie again.
    assert [c for c in started.headers.getlist("Set-Cookie") if c.startswith("bizmodel.sid=")]
    assert not [c for c in answered.headers.getlist("Set-Cookie") if c.startswith("bizmodel.sid=")]
