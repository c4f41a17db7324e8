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
