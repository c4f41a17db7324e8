"""NAT-fair limits through real nginx and gunicorn, with the default limits: a classroom on one
address gets through, a cookieless flood on another is refused, cookie cycling buys nothing."""

from __future__ import annotations

import random
import re
import time

import gevent
import gevent.event
import gevent.pool
import psycopg2
import pytest
import redis

from devstack.forms import CSRF_TOKEN_RE
from devstack.nginx import Nginx
from devstack.servers import Gunicorn
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.test_security_limits import client_from

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CSRF = CSRF_TOKEN_RE
CHOICE = re.compile(r'name="choice" value="(\d+)"')
CLASSROOM, CLASSROOM_IP, ABUSER_IP, CYCLER_IP = 30, "127.0.0.2", "127.0.0.3", "127.0.0.4"
NEW_SESSIONS_PER_MINUTE = 60  # RATELIMIT_NEW_SESSIONS default: 60/minute


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crowd")
    env = {"QUIZAPP_ENV": "test", "TRUSTED_PROXY_HOPS": "1", "OPENAI_API_KEY": ""}
    with Gunicorn("wsgi:app", workers=2, env=env, log_dir=tmp) as app_server:
        with Nginx([app_server.port], tmp / "nginx") as nginx:
            yield nginx


@pytest.fixture(scope="module")
def site(edge):
    return edge.url


def _token(page) -> str:
    match = CSRF.search(page.text)
    assert match, f"no form on {page.url}: {page.status_code}"
    return match.group(1)


def take_quiz(base: str, statuses: list[int]) -> str | None:
    """One person: landing, start, every question with 3-5 s think time, review, submit, result."""
    http = client_from(CLASSROOM_IP)

    def record(response):
        statuses.extend(r.status_code for r in (*response.history, response))
        return response

    page = record(http.get(base + "/", timeout=60))
    page = record(http.post(base + "/start", data={"csrf_token": _token(page)}, timeout=60))
    while "/q/" in page.url:
        gevent.sleep(random.uniform(3, 5))  # nosec B311 - think time
        choice = CHOICE.search(page.text).group(1)
        page = record(http.post(page.url, data={"csrf_token": _token(page), "choice": choice}, timeout=60))
    if not page.url.endswith("/review"):
        return None
    page = record(http.post(base + "/submit", data={"csrf_token": _token(page)}, timeout=60))
    return page.url if "/r/" in page.url and page.status_code == 200 else None


def flood(base: str, stop: gevent.event.Event, statuses: list[int]) -> None:
    """A cookieless client at 20 requests a second to /, paced by the clock, not by the answers."""
    http = client_from(ABUSER_IP)
    pool = gevent.pool.Pool(40)
    started = time.monotonic()
    sent = 0
    while not stop.is_set():
        pool.spawn(lambda: statuses.append(http.get(base + "/", timeout=30).status_code))
        sent += 1
        gevent.sleep(max(0.0, started + sent / 20 - time.monotonic()))
    pool.join(timeout=60)


def test_a_classroom_on_one_address_finishes_while_a_flood_on_another_is_refused(edge, site):
    taker_statuses: list[int] = []
    abuser_statuses: list[int] = []
    stop = gevent.event.Event()
    flood_started = time.monotonic()
    abuser = gevent.spawn(flood, site, stop, abuser_statuses)
    takers = [gevent.spawn(take_quiz, site, taker_statuses) for _ in range(CLASSROOM)]
    gevent.joinall(takers, timeout=300)
    stop.set()
    abuser.join(timeout=90)
    flood_seconds = time.monotonic() - flood_started

    results = [t.value for t in takers]
    assert sum(1 for r in results if r) == CLASSROOM, results
    assert taker_statuses.count(429) == 0 and all(s < 400 for s in taker_statuses)
    conn = psycopg2.connect(DATABASE_URL)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM quiz_attempts")
        assert cur.fetchone()[0] == CLASSROOM
    conn.close()

    refused = abuser_statuses.count(429)
    assert len(abuser_statuses) >= 600  # 20/s for the whole walk (at least 30 s of it)
    assert refused / len(abuser_statuses) >= 0.9, (refused, len(abuser_statuses))
    # nginx's edge pre-filter (no session cookie, per address: 2/s, burst 120) refused the rest of
    # the flood without a worker ("up=-": no upstream); the classroom's requests all reached the app.
    lines = [line for line in edge.access_log().splitlines() if " 429 " in line]
    # A refusal no app route answered still names its id-free path (nginx's $quizapp_plain_route).
    at_edge = sum(
        1
        for line in lines
        if line.startswith(ABUSER_IP + " ") and '"GET / HTTP/1.1" 429 ' in line and " up=- " in line
    )
    passed_edge = 120 + 2 * flood_seconds
    assert at_edge >= len(abuser_statuses) - passed_edge - 10, (at_edge, len(abuser_statuses), flood_seconds)
    assert not any(line.startswith(CLASSROOM_IP + " ") for line in lines)
    # The refusals are the access log's; the error log (level warn) gets no line per refusal.
    assert "limiting requests" not in edge.error_log()
    print(
        f"classroom {CLASSROOM}/{CLASSROOM}, 429s: 0; abuser refused {refused}/{len(abuser_statuses)}, "
        f"{at_edge} of them by nginx"
    )


def test_the_edge_refusal_is_the_friendly_page_with_retry_after(site):
    http = client_from("127.0.0.5")
    answers = [http.get(site + "/", timeout=30, allow_redirects=False) for _ in range(200)]
    # The app refuses first (its limit, 60 a minute, carries X-RateLimit-*), nginx past its burst.
    at_edge = [r for r in answers if r.status_code == 429 and "X-RateLimit-Limit" not in r.headers]
    assert at_edge, [r.status_code for r in answers]
    page = at_edge[-1]
    assert page.headers["Retry-After"] == "60" and page.headers["Content-Type"].startswith("text/html")
    assert "Slow down" in page.text and "Back to the start" in page.text


def test_cycling_cookies_cannot_start_more_sessions_than_the_address_limit(site):
    http = client_from(CYCLER_IP)
    token = _token(http.get(site + "/", timeout=30))  # keeps the CSRF cookie, drops every session
    started, refused = 0, 0
    for _ in range(NEW_SESSIONS_PER_MINUTE + 15):
        http.cookies.pop("bizmodel.sid", None)
        response = http.post(site + "/start", data={"csrf_token": token}, allow_redirects=False, timeout=30)
        if response.status_code == 303:
            assert "bizmodel.sid=" in response.headers["Set-Cookie"]
            started += 1
        else:
            assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
            refused += 1
    assert (started, refused) == (NEW_SESSIONS_PER_MINUTE, 15)
    client = redis.Redis.from_url(REDIS_URL)
    assert len(client.keys("s:*")) == NEW_SESSIONS_PER_MINUTE
    client.close()
    # The refused POSTs spent nothing: the same address can still look at pages.
    assert http.get(site + "/", timeout=30).status_code == 200
