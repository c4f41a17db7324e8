"""Locust scenarios: quiz-takers (with and without think time), classrooms, an admin polling health,
an abuser.

Every simulated user binds its TCP connections to its own source address in 127.0.0.0/8
(127.1.x.y), so nginx and the per-IP limits see thousands of distinct clients; a classroom is 30
users sharing one address (127.2.x.y). Traffic only ever goes to the loopback target given with
--host. A visitor sent to the waiting room (503 + X-Admission: wait) waits Retry-After seconds
and refreshes with the same cookies, as the page's meta refresh does.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import re
import sys
import time

import gevent
import gevent.socket
import locust.contrib.fasthttp
from geventhttpclient.connectionpool import ConnectionPool
from locust import FastHttpUser, between, constant, events, tag, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pooled_socket  # noqa: E402
from cookie_jar import HostCookieJar  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHOICE = re.compile(r'name="choice" value="(\d+)"')
RESULT = re.compile(r"/r/([A-Za-z0-9_-]{16,})")
QUESTION = re.compile(r"/q/([A-Za-z0-9_-]+)")

_addresses = itertools.count(0)
_classroom_seats = itertools.count(0)
CLASSROOM_SIZE = 30
MAX_WAIT_SECONDS = 900  # a visitor gives up after this long in the waiting room
_original_socket = ConnectionPool._create_tcp_socket


def _bound_socket(self, family, socktype, protocol):
    sock = _original_socket(self, family, socktype, protocol)
    source = getattr(gevent.getcurrent(), "quizapp_source_ip", None)
    if source:
        sock.bind((source, 0))
    return sock


ConnectionPool._create_tcp_socket = _bound_socket

# Every new connection (each person's first, and a waiting visitor's after its idle one closed)
# resolved the target's literal address again through gevent's resolver thread: 12 % of the
# generator's CPU in a 4,000-user step (py-spy --gil). The target never changes within a run.
_original_resolve = ConnectionPool._resolve
_resolved: dict[tuple, list] = {}


def _cached_resolve(self):
    key = (self._connection_host, self._connection_port, self.disable_ipv6)
    if key not in _resolved:
        _resolved[key] = _original_resolve(self)
    return _resolved[key]


ConnectionPool._resolve = _cached_resolve

# A pooled connection is reused whatever its descriptor number (bench/pooled_socket.py: the
# library's select() check sent every user past descriptor 1,023 to a new connection per request).
pooled_socket.install()

# Each simulated visitor's cookies in a one-host jar instead of http.cookiejar's (bench/cookie_jar.py:
# about a tenth of the generator's CPU went to its policy machinery). BENCH_STDLIB_COOKIES=1 keeps
# the standard jar, to compare.
if os.environ.get("BENCH_STDLIB_COOKIES") != "1":
    locust.contrib.fasthttp.CookieJar = HostCookieJar

# The generator's own pauses. Thousands of users keep ~360,000 objects alive, and CPython's full
# collection walks them all: 260-380 ms every 8-10 s in a 4,000-user step (measured with
# gc.callbacks). Every simulated user froze at once and then sent its requests in one burst,
# which the servers saw as a synchronized spike (their p99 rose to ~350 ms in those seconds,
# against 3 ms at the median). Young collections stay as they are; full ones no longer run on
# their own. The cyclic garbage that outlives them waits for the process to end, a few minutes
# per step.
gc.set_threshold(700, 10, 10**9)


# With --processes, each worker process hands out every PROCESSES-th address from its own index,
# so no two processes' users share one (a classroom's 30 pupils all come from one process).
PROCESSES = int(os.environ.get("BENCH_LOCUST_PROCESSES", "1"))
_process = {"index": 0}


@events.test_start.add_listener
def _note_process(environment, **_kwargs) -> None:
    """Each node's index, known once the master has acknowledged it (before any user starts)."""
    _process["index"] = max(0, getattr(environment.runner, "worker_index", 0)) % PROCESSES


def next_source_ip() -> str:
    n = (next(_addresses) * PROCESSES + _process["index"]) % 65000
    return f"127.1.{n // 250}.{n % 250 + 2}"


def next_classroom_ip() -> str:
    n = ((next(_classroom_seats) // CLASSROOM_SIZE) * PROCESSES + _process["index"]) % 65000
    return f"127.2.{n // 250}.{n % 250 + 2}"


def _event(name: str, response_time: float = 0, kind: str = "FLOW") -> None:
    events.request.fire(
        request_type=kind,
        name=name,
        response_time=response_time,
        response_length=0,
        exception=None,
        context={},
    )


def _waiting(response) -> bool:
    return response.status_code == 503 and response.headers.get("X-Admission") in ("wait", "busy")


class QuizTaker(FastHttpUser):
    """A person: landing, 12 questions with 3-7 s think time, submit, result, AI poll, sometimes pay."""

    wait_time = between(3, 7)
    weight = int(os.environ.get("BENCH_WEIGHT_TAKER", "20"))
    think = True

    def on_start(self):
        gevent.getcurrent().quizapp_source_ip = self._new_person_ip()

    def _new_person_ip(self) -> str:
        return next_source_ip()

    def _enter(self):
        """The landing page, through the waiting room when the cluster is full (bounded wait)."""
        waited_since = None
        while True:
            with self.client.get("/", name="landing", catch_response=True) as page:
                if not _waiting(page):
                    break
                page.success()  # the waiting room is an answer, not a failure
            if waited_since is None:
                waited_since = time.monotonic()
            if time.monotonic() - waited_since > MAX_WAIT_SECONDS:
                return None
            gevent.sleep(int(page.headers.get("Retry-After", "5")))
        if waited_since is not None:
            _event("admission wait", (time.monotonic() - waited_since) * 1000, kind="WAIT")
        return page

    def _start(self):
        """Landing, then Start; a full worker may answer Start with the waiting page (not started
        yet: shed, not refused), and the visitor comes back after Retry-After, as its refresh does."""
        for _ in range(10):
            page = self._enter()
            token = _first(CSRF, page.text if page is not None else "")
            if not token:
                return None
            form = {"csrf_token": token}
            with self.client.post("/start", data=form, name="start", catch_response=True) as page:
                if not _waiting(page):
                    return page
                page.success()
            gevent.sleep(int(page.headers.get("Retry-After", "5")))
        return None

    def _started_ok(self, page) -> bool:
        """A started quiz must never be refused: count any refusal of one."""
        if page.status_code == 429 or page.status_code >= 500:
            _event("started refused")
            return False
        return True

    def _pause(self):
        if self.think:
            gevent.sleep(random.uniform(3, 7))  # nosec B311 - simulated think time

    @task
    def take_quiz(self):
        # Each iteration is a new person: a fresh cookie jar, source address and connections.
        self.client.cookiejar.clear()
        self.client.client.clientpool.close()
        gevent.getcurrent().quizapp_source_ip = self._new_person_ip()
        page = self._start()
        if page is None:
            gevent.sleep(1)  # refused (e.g. 429): back off like a person would
            return
        if page.status_code == 200 and QUESTION.search(page.url or ""):
            _event("quiz started")
        for _ in range(40):  # bounded: 14 questions expected
            match = QUESTION.search(page.url or "")
            if not self._started_ok(page) or not match or page.status_code != 200:
                break
            self._pause()
            choices = CHOICE.findall(page.text)
            token = _first(CSRF, page.text)
            page = self.client.post(
                f"/q/{match.group(1)}",
                data={"csrf_token": token, "choice": random.choice(choices)},  # nosec B311
                name="question",
            )
        if "/review" not in (page.url or ""):
            return
        token = _first(CSRF, page.text)
        page = self.client.post("/submit", data={"csrf_token": token}, name="submit")
        match = RESULT.search(page.url or "")
        if not self._started_ok(page) or not match:
            return
        public_id = match.group(1)
        _event("quiz completed")
        for _ in range(5):
            status = self.client.get(f"/api/analysis/{public_id}", name="ai poll")
            if status.status_code != 200 or not status.json().get("pending"):
                break
            gevent.sleep(2 if self.think else 0.2)
        roll = random.random()  # nosec B311
        token = _first(CSRF, page.text)
        if roll < 0.2:
            self.client.post(
                f"/r/{public_id}/email",
                data={"csrf_token": token, "email": f"user{random.randrange(10**9)}@example.com"},  # nosec B311
                name="email",
            )
        if roll < 0.05:
            self._pay(public_id, token)

    def _pay(self, public_id, token):
        page = self.client.post(
            "/pay/checkout", data={"csrf_token": token, "public_id": public_id}, name="checkout"
        )
        if "/pay/test/" not in (page.url or ""):
            return
        token = _first(CSRF, page.text)
        self.client.post(_path(page.url), data={"csrf_token": token}, name="pay")


class ClassroomQuizTaker(QuizTaker):
    """A pupil: the same quiz, 30 pupils of a classroom behind one address (NAT)."""

    weight = int(os.environ.get("BENCH_WEIGHT_CLASSROOM", "0"))

    def on_start(self):
        self.room_ip = next_classroom_ip()
        super().on_start()

    def _new_person_ip(self) -> str:
        return self.room_ip


class FastQuizTaker(QuizTaker):
    """The same flow with no think time: raw throughput."""

    wait_time = constant(0)
    weight = int(os.environ.get("BENCH_WEIGHT_FAST", "0"))
    think = False


class AdminPoller(FastHttpUser):
    """An operator's dashboard polling the cluster health API."""

    wait_time = constant(2)
    fixed_count = int(os.environ.get("BENCH_ADMINS", "1"))  # one dashboard, whatever the user count

    def on_start(self):
        # nginx serves /api/health/ to loopback's 127.0.0.1 only, like a local monitoring agent.
        gevent.getcurrent().quizapp_source_ip = None

    @task
    def poll(self):
        with self.client.get("/api/health/detailed", name="health", catch_response=True) as response:
            if response.status_code in (200, 503):
                response.success()


class Abuser(FastHttpUser):
    """One client hammering the landing page: it should get 429s, others should not notice."""

    wait_time = constant(0.02)
    fixed_count = int(os.environ.get("BENCH_ABUSERS", "1"))  # one abusive client, ~50 req/s

    def on_start(self):
        gevent.getcurrent().quizapp_source_ip = "127.0.0.66"

    @tag("abuse")
    @task
    def hammer(self):
        with self.client.get("/", name="abuse", catch_response=True) as response:
            if response.status_code == 429:
                response.success()


class NoopProbe(FastHttpUser):
    """For the efficiency ratio: the app's cheapest endpoint (no session, no I/O)."""

    wait_time = constant(0)
    weight = int(os.environ.get("BENCH_WEIGHT_NOOP", "0"))

    def on_start(self):
        gevent.getcurrent().quizapp_source_ip = next_source_ip()

    @task
    def noop(self):
        self.client.get(os.environ.get("BENCH_NOOP_PATH", "/healthz"), name="noop")


def _first(pattern, text):
    match = pattern.search(text or "")
    return match.group(1) if match else ""


def _path(url):
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[-1]
