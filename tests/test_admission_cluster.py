"""Admission through real nginx and gunicorn: FIFO across instances, priorities, JSON, no Postgres."""

import time

import gevent
import pytest
import requests

from devstack.stack import Stack
from quizapp.admission.repository import STATE_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, migrated_database):
    env = {
        "ADMISSION_MAX_IN_FLIGHT": "1",
        "ADMISSION_QUEUE_TIMEOUT_MS": "20000",
        "ADMISSION_CAPACITY": "1000",
        "ADMISSION_PACE_PER_SECOND": "off",  # the capacity rule alone; pacing: test_admission_pace.py
        "CSRF_ENABLED": "false",
        "TRUSTED_PROXY_HOPS": "1",
    }
    with Stack(
        tmp_path_factory.mktemp("admission"),
        instances=2,
        app_path="tests.support.admission_app:app",
        env=env,
        socket_activated=False,
    ) as running:
        yield running


def _visit(base, session=None, headers=None):
    session = session or requests.Session()
    return session, session.get(base + "/", headers=headers, timeout=30)


def test_fifo_across_two_instances_and_refresh_keeps_place(stack, redis_client):
    redis_client.hset(STATE_KEY, "capacity", 1)
    a, b = stack.instances[0].url, stack.instances[1].url
    _, first = _visit(a)
    assert first.status_code == 200
    waiting = []
    for i in range(4):  # alternate instances: one queue for the whole cluster
        session, answer = _visit(a if i % 2 else b, headers=JSON)
        assert answer.status_code == 503 and answer.json()["position"] == i + 1
        waiting.append(session)
    for i, session in enumerate(waiting):  # refresh on the other instance: same place
        _, again = _visit(b if i % 2 else a, session, headers=JSON)
        assert again.json()["position"] == i + 1
    redis_client.hset(STATE_KEY, "capacity", 3)  # two more slots: the first two in line, in order
    outcomes = [_visit(stack.url, s, headers=JSON)[1].status_code for s in reversed(waiting)]
    assert outcomes == [503, 503, 200, 200]
    assert _visit(stack.url, waiting[3], headers=JSON)[1].json()["position"] == 2


def test_priorities_on_a_full_worker_and_no_postgres_in_the_waiting_room(stack, redis_client, pg_conn):
    base = stack.instances[0].url
    taker = requests.Session()
    assert taker.get(base + "/", timeout=30).status_code == 200
    assert taker.post(base + "/start", timeout=30, allow_redirects=False).status_code == 303
    done = []

    def fetch(name, session, path):
        response = session.get(base + path, timeout=60)
        done.append((name, response.status_code))

    holder = gevent.spawn(fetch, "hold", requests.Session(), "/_test/hold?seconds=5")
    gevent.sleep(1.5)  # the worker's single slot is taken (generous: the box may be busy)
    # Each waiter then holds the slot for 1 s itself, so the order the client sees is the order
    # the worker served them (two fast pages finishing in the same instant could arrive in any order).
    new = gevent.spawn(fetch, "new", requests.Session(), "/_test/hold?seconds=1")
    gevent.sleep(1.0)
    started = gevent.spawn(fetch, "started", taker, "/_test/hold?seconds=1")
    gevent.sleep(1.0)
    t0 = time.monotonic()
    fetch("health", requests.Session(), "/healthz")
    assert time.monotonic() - t0 < 1.5 and not done[1:]  # critical: not behind the held slot
    gevent.joinall([holder, new, started], timeout=60, raise_error=True)
    assert done == [("health", 200), ("hold", 200), ("started", 200), ("new", 200)]

    # Cluster full: the waiting room answers without asking Postgres.
    redis_client.hset(STATE_KEY, "capacity", 1)
    with pg_conn.cursor() as cur:
        cur.execute("SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database")
        before = cur.fetchone()[0]
    answers = [requests.get(stack.url + "/", timeout=30) for _ in range(20)]
    assert all(a.status_code == 503 and a.headers["X-Admission"] == "wait" for a in answers)
    assert all("Retry-After" in a.headers for a in answers)
    with pg_conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database")
        after = cur.fetchone()[0]
    # Far below one per answer (the test-client test counts exactly 0 checkouts per answer).
    assert after - before < len(answers)
