"""The load generator's one-host cookie jar sends what http.cookiejar would, for the app's cookies."""

from http.cookiejar import CookieJar

import pytest
from geventhttpclient.header import Headers
from geventhttpclient.useragent import CompatRequest

from bench import cookie_jar
from bench.cookie_jar import HostCookieJar
from devstack.forms import csrf_token

URL = "http://127.0.0.1:8080/q/capital"


class _Response:
    def __init__(self, set_cookies: list[str]):
        self.headers = Headers()
        for line in set_cookies:
            self.headers.add("Set-Cookie", line)

    def info(self):  # http.cookiejar reads the headers through it
        return self.headers


def _sent(jar) -> str | None:
    request = CompatRequest(URL, headers=Headers())
    jar.add_cookie_header(request)
    return request.headers.get("Cookie")


def _pairs(header: str | None) -> set[str]:
    return set(header.split("; ")) if header else set()


def test_the_apps_cookies_go_back_as_http_cookiejar_sends_them(make_app):
    """The app's real Set-Cookie lines along a landing, a start and a question."""
    real = make_app(RATELIMIT_ENABLED="false").test_client()
    landing = real.get("/")
    start = real.post("/start", data={"csrf_token": csrf_token(landing)})
    question = real.get(start.headers["Location"])
    ours, stdlib = HostCookieJar(), CookieJar()
    for response in (landing, start, question):
        fake = _Response(response.headers.getlist("Set-Cookie"))
        ours.extract_cookies(fake, CompatRequest(URL, headers=Headers()))
        stdlib.extract_cookies(fake, CompatRequest(URL, headers=Headers()))
        assert _pairs(_sent(ours)) == _pairs(_sent(stdlib))
    assert {"qa.adm", "bizmodel.csrf", "bizmodel.sid"} <= set(ours)


def test_removal_expiry_and_clear(monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(cookie_jar.time, "time", lambda: now[0])
    jar = HostCookieJar()
    jar.extract_cookies(
        _Response(
            [
                "a=1; Max-Age=60; Path=/; HttpOnly",
                "b=2; Expires=Thu, 01 Jan 2099 00:00:00 GMT; Path=/",
                "c=3; Path=/",  # a browser-session cookie
            ]
        )
    )
    assert _pairs(_sent(jar)) == {"a=1", "b=2", "c=3"}
    now[0] += 61  # a's Max-Age has run out
    assert _pairs(_sent(jar)) == {"b=2", "c=3"}
    jar.extract_cookies(_Response(["b=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"]))
    jar.extract_cookies(_Response(["c=4; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"]))  # a past Expires
    assert _sent(jar) is None and len(jar) == 0
    jar.extract_cookies(_Response(["d=5", "not a cookie", "=nameless"]))
    assert _sent(jar) == "d=5" and jar.get("d") == "5"
    jar.clear()
    assert _sent(jar) is None


@pytest.mark.parametrize("header", ["x=9", "x=9; y=8"])
def test_a_cookie_header_already_set_is_kept(header):
    jar = HostCookieJar()
    jar.extract_cookies(_Response(["a=1; Max-Age=60"]))
    request = CompatRequest(URL, headers=Headers({"Cookie": header}))
    jar.add_cookie_header(request)
    assert request.headers.get("Cookie") == header
