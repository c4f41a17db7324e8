"""Rate limits hold across gunicorn instances and behind nginx, by the client's real address."""

from __future__ import annotations

import itertools

import gevent.pool
import pytest
import requests
from requests.adapters import HTTPAdapter

from devstack.nginx import Nginx
from devstack.servers import Gunicorn

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "tests.support.security_app:app"
SUBMIT_LIMIT = 20  # RATELIMIT_SUBMIT default: 20/minute


class SourceAddressAdapter(HTTPAdapter):
    """Connect from a chosen loopback address, as a distinct client would."""

    def __init__(self, source_ip: str):
        self.source_ip = source_ip
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


def client_from(source_ip: str) -> requests.Session:
    session = requests.Session()
    adapter = SourceAddressAdapter(source_ip)
    session.mount("http://", adapter)
    return session


def test_submit_limit_is_shared_by_two_instances(tmp_path):
    env = {"QUIZAPP_ENV": "test", "REQUEST_LOG_ALL": "true"}  # count every request line
    with (
        Gunicorn(APP, workers=2, env=env, log_dir=tmp_path) as one,
        Gunicorn(APP, workers=1, env=env, log_dir=tmp_path) as two,
    ):
        urls = itertools.cycle([one.url, two.url])
        targets = [next(urls) + "/_test/submit" for _ in range(SUBMIT_LIMIT + 10)]
        pool = gevent.pool.Pool(10)
        responses = pool.map(lambda url: requests.post(url, timeout=10), targets)

        codes = [r.status_code for r in responses]
        assert codes.count(200) == SUBMIT_LIMIT
        assert codes.count(429) == 10
        refused = [r for r in responses if r.status_code == 429]
        for response in refused:
            assert int(response.headers["Retry-After"]) > 0
            assert response.headers["X-RateLimit-Limit"] == str(SUBMIT_LIMIT)
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert "Slow down" in response.text
            assert response.headers["X-Request-ID"]
        # The 21st from the same address, whichever instance gets it, is refused too.
        for url in (one.url, two.url):
            assert requests.post(url + "/_test/submit", timeout=10).status_code == 429
        # Health checks are never limited.
        assert all(requests.get(one.url + "/healthz", timeout=5).status_code == 200 for _ in range(5))
    # One structured line per request, with its id, status and duration, across both instances.
    lines = [
        line
        for server in (one, two)
        for line in server.log_text().splitlines()
        if "msg=request " in line and "route=/_test/submit" in line
    ]
    assert len(lines) == SUBMIT_LIMIT + 10 + 2
    assert sum("status=429" in line for line in lines) == 12
    assert all("method=POST" in line and "request_id=" in line and "duration_ms=" in line for line in lines)


def test_spoofed_forwarded_for_behind_nginx_is_limited_by_real_address(tmp_path):
    env = {"QUIZAPP_ENV": "test", "TRUSTED_PROXY_HOPS": "1"}
    with Gunicorn(APP, workers=1, env=env, log_dir=tmp_path) as app_server:
        # The real nginx/quizapp.conf.template, rendered for this one upstream.
        with Nginx([app_server.port], tmp_path / "nginx") as nginx:
            attacker = client_from("127.0.0.2")
            other = client_from("127.0.0.3")

            seen = attacker.get(nginx.url + "/_test/whoami", headers={"X-Forwarded-For": "203.0.113.9"})
            assert seen.json() == {"remote_addr": "127.0.0.2", "scheme": "http"}
            assert len(seen.headers["X-Request-ID"]) == 32  # nginx's $request_id, kept

            codes = []
            for n in range(SUBMIT_LIMIT + 5):
                # A fresh forged address on every request must not buy a fresh budget.
                spoof = {"X-Forwarded-For": f"198.51.100.{n}"}
                codes.append(attacker.post(nginx.url + "/_test/submit", headers=spoof).status_code)
            assert codes.count(200) == SUBMIT_LIMIT
            assert codes[SUBMIT_LIMIT:] == [429] * 5

            # Another client is counted separately.
            other_codes = [other.post(nginx.url + "/_test/submit").status_code for _ in range(5)]
            assert other_codes == [200] * 5
