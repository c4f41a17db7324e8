"""WAIT-backed writes without a replica: sessions carry on (logged), an AI call never starts."""

from __future__ import annotations

import pytest

from devstack.quiz_walk import csrf_from
from quizapp import redis_conn
from quizapp.ai.budget import WINDOW_KEY, Budget


def test_a_budget_start_that_reaches_no_replica_is_refused(redis_client):
    # Every knob by keyword, as call sites should read; alike in shape to db.py's Pool signature, not a copy.
    budget = Budget(
        redis_client,
        rpm=5,
        window_seconds=10,
        max_in_flight=2,
        lease_seconds=5,
        replicas=1,
        wait_timeout_ms=30,
    )
    lease, _ = budget.try_acquire()
    with pytest.raises(redis_conn.NotReplicated):
        budget.stamp_start(lease, "ai:test:metrics")
    budget.refund(lease)  # what the caller does when no call was made
    assert redis_client.zcard(WINDOW_KEY) == 0


def test_sessions_are_kept_when_the_replica_is_missing(make_app, redis_client, caplog):
    app = make_app(REDIS_WAIT_REPLICAS=1, REDIS_WAIT_TIMEOUT_MS=30)
    client = app.test_client()
    assert client.post("/start", data={"csrf_token": csrf_from(client.get("/"))}).status_code == 303
    assert redis_client.keys("s:*")
    assert "redis.write_not_replicated" in caplog.text


def _wait_calls(redis_client) -> int:
    return redis_client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)


def _answer_pages(app, client, count: int) -> list[int]:
    """Start a quiz and answer `count` questions: each answer changes the session, so each is a write."""
    client.post("/start", data={"csrf_token": csrf_from(client.get("/"))})
    statuses = []
    for question in app.extensions["quiz_content"].questions[:count]:
        page = client.get(f"/q/{question.id}")
        choice = "0" if question.kind == "choice" else "3"
        statuses.append(
            client.post(
                f"/q/{question.id}", data={"csrf_token": csrf_from(page), "choice": choice}
            ).status_code
        )
    return statuses


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_a_short_wait_session_writes_skip_it_for_a_while(make_app, redis_client, caplog):
    # The suite's Redis has no replica: every WAIT comes back 0 after its timeout.
    app = make_app(REDIS_WAIT_REPLICAS=1, REDIS_WAIT_TIMEOUT_MS=30, REDIS_WAIT_SKIP_SECONDS=5)
    clock = app.session_interface.durable._clock = _Clock()
    client = app.test_client()
    before = _wait_calls(redis_client)
    statuses = _answer_pages(app, client, 4)
    assert statuses == [303] * 4, statuses
    assert _wait_calls(redis_client) - before == 1  # the first write waited; the next ones did not
    assert caplog.text.count("redis.wait_skipped") == 1
    clock.now += 5.1  # the interval is over: the next write waits again, and skips again after
    _answer_pages(app, client, 3)
    assert _wait_calls(redis_client) - before == 2
    assert redis_client.keys("s:*")


def test_with_no_skip_every_session_write_waits(make_app, redis_client):
    app = make_app(REDIS_WAIT_REPLICAS=1, REDIS_WAIT_TIMEOUT_MS=10, REDIS_WAIT_SKIP_SECONDS=0)
    client = app.test_client()
    before = _wait_calls(redis_client)
    _answer_pages(app, client, 3)
    writes = _wait_calls(redis_client) - before
    assert writes >= 4  # the start and each answer: every one of them waited


def test_a_wait_that_is_answered_keeps_every_write_waiting(redis_client):
    # The same class over a client whose WAIT is answered: never skips (a healthy replica).
    class Answered:
        def __init__(self):
            self.waits = 0

        def set(self, *args, **kwargs):
            pass

        def pipeline(self, transaction=False):
            outer = self

            class Pipe:
                def set(self, *args, **kwargs):
                    pass

                def wait(self, *args):
                    outer.waits += 1

                def execute(self):
                    return [True, 1]

            return Pipe()

    client = Answered()
    writes = redis_conn.SessionWrites(client, replicas=1, timeout_ms=30, skip_seconds=5)
    assert all(writes.set("s:x", b"v", ex=60) for _ in range(5))
    assert client.waits == 5 and not writes.skipping


def test_concurrent_writers_send_one_probe_per_interval(redis_client):
    # Twelve writers at once on the suite's replica-less Redis: the writes in flight when the first
    # WAIT comes back short wait it out, then each interval one write waits while the others skip.
    import threading
    import time

    threads_n, seconds, skip_s = 12, 2.0, 0.5
    writes = redis_conn.SessionWrites(redis_client, replicas=1, timeout_ms=100, skip_seconds=skip_s)
    done = []
    stop_at = time.monotonic() + seconds

    def writer(i):
        n = 0
        while time.monotonic() < stop_at:
            writes.set(f"s:probe-test-{i}", b"v", ex=60)
            n += 1
        done.append(n)

    before = _wait_calls(redis_client)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    waits = _wait_calls(redis_client) - before
    intervals = int(seconds / skip_s) + 1
    # Without the probe's early stamp every writer would wait at each interval: 12 more per interval.
    # Threads (not greenlets) may both pass the check now and then: a slack of one more per interval.
    assert waits <= threads_n + 2 * intervals, (waits, sum(done))
    assert sum(done) > 10 * waits  # the writes went on meanwhile
