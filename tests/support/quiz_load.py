"""Quiz walkers over HTTP for the chaos tests: every request recorded, every confirmed submit kept."""

from __future__ import annotations

import random
import re
import time

import gevent
import psycopg2
import requests

from devstack.forms import CSRF_TOKEN_RE as CSRF

CHOICE = re.compile(r'name="choice" value="(\d+)"')
RESULT = re.compile(r"/r/([A-Za-z0-9_-]{16,})$")
ANSWERED = re.compile(r"\((\d+) of \d+ answered\)")


def token_of(response) -> str:
    match = CSRF.search(response.text or "") if response is not None else None
    return match.group(1) if match else ""


class QuizLoad:
    """`clients` greenlets, each taking the quiz over and over through `base` (nginx)."""

    def __init__(self, base: str, clients: int, think: float = 0.05, rng_seed: int = 15):
        self.base = base
        self.clients = clients
        self.think = think
        self.rng = random.Random(rng_seed)
        self.records: list[tuple[float, float, str, int]] = []  # (sent, answered, label, status)
        self.confirmed: list[str] = []  # result ids whose submit was confirmed (303 to /r/<id>)
        self.spans: list[tuple[float, float]] = []  # (start, confirmation) of each confirmed quiz
        self.running = False
        self.jobs: list[gevent.Greenlet] = []

    def start(self) -> QuizLoad:
        self.running = True
        self.jobs = [gevent.spawn(self._client) for _ in range(self.clients)]
        return self

    def stop(self) -> None:
        self.running = False
        gevent.joinall(self.jobs, timeout=30)
        gevent.killall(self.jobs, timeout=5)

    def call(self, http, method: str, label: str, path: str, **kwargs):
        sent = time.monotonic()
        try:
            response = http.request(method, self.base + path, timeout=20, allow_redirects=False, **kwargs)
        except requests.RequestException:
            self.records.append((sent, time.monotonic(), label, 0))
            return None
        self.records.append((sent, time.monotonic(), label, response.status_code))
        return response

    def _client(self) -> None:
        while self.running:
            with requests.Session() as http:
                self.walk(http)
            gevent.sleep(self.think)

    def walk(self, http, stop_after: int | None = None) -> str | None:
        """One quiz from the landing page; stop after `stop_after` answers, else submit. Result id."""
        started = time.monotonic()
        landing = self.call(http, "GET", "landing", "/")
        if landing is None or landing.status_code != 200:
            return None
        response = self.call(http, "POST", "start", "/start", data={"csrf_token": token_of(landing)})
        answered = 0
        while response is not None and response.status_code == 303:
            target = response.headers["Location"].split("://", 1)[-1].split("/", 1)[-1]
            if not target.startswith("q/"):
                break
            if stop_after is not None and answered >= stop_after:
                return None
            page = self.call(http, "GET", "question", "/" + target)
            if page is None or page.status_code != 200:
                return None
            choice = self.rng.choice(CHOICE.findall(page.text) or ["3"])
            data = {"csrf_token": token_of(page), "choice": choice}
            response = self.call(http, "POST", "answer", "/" + target, data=data)
            answered += 1
            gevent.sleep(self.think * self.rng.random())
        if response is None or response.status_code != 303:
            return None
        review = self.call(http, "GET", "review", "/review")
        if review is None or review.status_code != 200:
            return None
        submitted = self.call(http, "POST", "submit", "/submit", data={"csrf_token": token_of(review)})
        if submitted is None or submitted.status_code != 303:
            return None
        match = RESULT.search(submitted.headers["Location"])
        if not match:
            return None
        self.confirmed.append(match.group(1))
        self.spans.append((started, time.monotonic()))
        self.call(http, "GET", "result", f"/r/{match.group(1)}")
        return match.group(1)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> dict[int, int]:
        """Status counts of the requests sent at or after `since` and answered before `until`."""
        counts: dict[int, int] = {}
        for sent, answered, _, status in self.records:
            if since <= sent and answered < until:
                counts[status] = counts.get(status, 0) + 1
        return counts


def answered_count(base: str, cookies) -> int:
    """How many answers the session behind `cookies` holds (from the landing page's resume link)."""
    response = requests.get(base + "/", cookies=cookies, timeout=20)
    response.raise_for_status()
    match = ANSWERED.search(response.text)
    return int(match.group(1)) if match else 0


def lost_writes(dsn: str, confirmed: list[str]) -> int:
    """Confirmed submits whose attempt is not in Postgres."""
    if not confirmed:
        return 0
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM quiz_attempts WHERE public_id = ANY(%(ids)s)",
                {"ids": list(set(confirmed))},
            )
            return len(set(confirmed)) - cur.fetchone()[0]
    finally:
        conn.close()


class HostHopper(QuizLoad):
    """One quiz whose requests go to each host in turn, its cookies (session, CSRF) carried by hand."""

    def __init__(self, bases: list[str]):
        super().__init__(bases[0], clients=0)
        self.bases = bases
        self.cookies: dict[str, str] = {}
        self.hosts_used: list[str] = []

    def call(self, http, method: str, label: str, path: str, **kwargs):
        self.base = self.bases[len(self.records) % len(self.bases)]
        self.hosts_used.append(self.base)
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = super().call(
            http, method, label, path, headers={"Cookie": cookie} if cookie else {}, **kwargs
        )
        if response is not None:
            self.cookies.update(response.cookies.items())
        return response
