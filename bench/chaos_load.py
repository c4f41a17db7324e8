"""Steady quiz traffic for `make chaos`: simulated clients, write probes, and what a window of it saw."""

from __future__ import annotations

import random
import re
import time

import gevent
import psycopg2
import requests
from requests.adapters import HTTPAdapter

from devstack.forms import CSRF_TOKEN_RE as CSRF

CHOICE = re.compile(r'name="choice" value="(\d+)"')
RESULT = re.compile(r"/r/([A-Za-z0-9_-]{16,})$")


class SourceAdapter(HTTPAdapter):
    """Bind every connection of one simulated client to its own loopback address."""

    def __init__(self, source_ip: str):
        self.source_ip = source_ip
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


class Load:
    """N clients taking the quiz over and over with a short think time; every request is recorded."""

    def __init__(self, base: str, clients: int, think: float = 0.3):
        self.base = base
        self.clients = clients
        self.think = think
        self.records: list[tuple[float, str, int]] = []  # (time, label, status; 0 = no answer)
        self.confirmed: list[tuple[float, str]] = []
        self.running = True
        self.jobs: list[gevent.Greenlet] = []

    def start(self):
        self.jobs = [gevent.spawn(self._client, i) for i in range(self.clients)]

    def stop(self):
        self.running = False
        gevent.joinall(self.jobs, timeout=20)
        gevent.killall(self.jobs, timeout=5)

    def _get(self, http, label, path, **kw):
        return self._call(http.get, label, path, **kw)

    def _post(self, http, label, path, **kw):
        return self._call(http.post, label, path, **kw)

    def _call(self, method, label, path, **kw):
        try:
            response = method(self.base + path, timeout=15, **kw)
        except requests.RequestException:
            self.records.append((time.time(), label, 0))
            return None
        self.records.append((time.time(), label, response.status_code))
        return response

    def _client(self, index: int):
        n = 0
        while self.running:
            n += 1
            http = requests.Session()
            ip = f"127.2.{(index * 97 + n) % 250}.{index % 250 + 2}"
            http.mount("http://", SourceAdapter(ip))
            self._flow(http)
            http.close()

    def _flow(self, http):
        page = self._get(http, "landing", "/")
        token = _first(CSRF, page)
        if not token:
            return gevent.sleep(self.think)
        page = self._post(http, "start", "/start", data={"csrf_token": token})
        for _ in range(30):
            if page is None or page.status_code != 200 or "/q/" not in page.url:
                break
            gevent.sleep(self.think * random.random())  # nosec B311 - think time
            choices = CHOICE.findall(page.text) or ["0"]
            path = "/" + page.url.split("/", 3)[3]
            page = self._post(
                http,
                "question",
                path,
                data={"csrf_token": _first(CSRF, page), "choice": random.choice(choices)},  # nosec B311
            )
        if page is None or "/review" not in page.url:
            return gevent.sleep(self.think)
        response = self._post(http, "submit", "/submit", data={"csrf_token": _first(CSRF, page)})
        if response is not None and response.status_code == 200:
            match = RESULT.search(response.url)
            if match:
                self.confirmed.append((time.time(), match.group(1)))


def _first(pattern, response):
    if response is None:
        return ""
    match = pattern.search(response.text or "")
    return match.group(1) if match else ""


def window_figures(load: Load, since: float, until: float, event_at: float) -> dict:
    rows = [r for r in load.records if since <= r[0] < until]
    failed = [r for r in rows if r[2] == 0 or r[2] >= 500]
    last_failure = max((r[0] for r in failed), default=None)
    return {
        "requests": len(rows),
        "failed": len(failed),
        "status_5xx": sum(1 for r in rows if r[2] >= 500),
        "recovery_s": round(last_failure - event_at, 2) if last_failure else 0.0,
    }


def lost_writes(dsn: str, confirmed: list[tuple[float, str]]) -> int:
    if not confirmed:
        return 0
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM quiz_attempts WHERE public_id = ANY(%(ids)s)",
            {"ids": [c[1] for c in confirmed]},
        )
        found = cur.fetchone()[0]
    conn.close()
    return len({c[1] for c in confirmed}) - found


class WriteProbe:
    """Quizzes answered up to the review page, ready to submit the moment a dependency is back."""

    def __init__(self, base: str, load: Load, count: int = 5):
        self.base = base
        self.load = load
        self.ready: list[tuple[requests.Session, str]] = []
        for i in range(count):
            http = requests.Session()
            http.mount("http://", SourceAdapter(f"127.3.{len(load.confirmed) % 250}.{i + 2}"))
            page = http.get(base + "/", timeout=10)
            page = http.post(base + "/start", data={"csrf_token": _first(CSRF, page)}, timeout=10)
            for _ in range(40):  # bounded: one page per question
                if page.status_code != 200 or "/q/" not in page.url:
                    break
                path = "/" + page.url.split("/", 3)[3]
                data = {"csrf_token": _first(CSRF, page), "choice": (CHOICE.findall(page.text) or ["0"])[0]}
                page = http.post(self.base + path, data=data, timeout=10)
            if "/review" not in page.url:
                raise RuntimeError(
                    f"write probe could not reach the review page: {page.status_code} {page.url}"
                )
            self.ready.append((http, _first(CSRF, page)))

    def first_write(self, since: float, timeout: float = 20.0) -> float | None:
        """Submit until one is confirmed; seconds from `since` to that confirmation."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for http, token in self.ready:
                try:
                    response = http.post(self.base + "/submit", data={"csrf_token": token}, timeout=5)
                except requests.RequestException:
                    continue
                match = RESULT.search(response.url) if response.status_code == 200 else None
                if match:
                    self.load.confirmed.append((time.time(), match.group(1)))
                    return round(time.time() - since, 3)
            gevent.sleep(0.02)
        return None


def first_session_write(base: str, since: float, timeout: float = 20.0) -> float | None:
    """A new visitor starting a quiz (a session written to Redis); seconds from `since` to success."""
    deadline = time.time() + timeout
    n = 0
    while time.time() < deadline:
        n += 1
        http = requests.Session()
        http.mount("http://", SourceAdapter(f"127.4.{n // 250}.{n % 250 + 2}"))
        try:
            page = http.get(base + "/", timeout=5)
            token = _first(CSRF, page)
            if token and http.post(base + "/start", data={"csrf_token": token}, timeout=5).status_code == 200:
                return round(time.time() - since, 3)
        except requests.RequestException:
            pass
        gevent.sleep(0.02)
    return None
