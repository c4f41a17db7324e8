"""A missing replica under quiz load: session writes stop waiting for it, the pages keep their pace.

The suite's Redis is standalone, so with REDIS_WAIT_REPLICAS=1 no WAIT is ever answered: the state
of a primary whose replica is gone. Real nginx, gunicorn, Redis and Postgres.
"""

from __future__ import annotations

import os
import time

import pytest
import redis

from devstack.stack import Stack
from tests.support.quiz_load import QuizLoad
from tests.test_redis_durability import _wait_calls

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTANCES, CLIENTS, SECONDS = 2, 6, 8.0
WAIT_TIMEOUT_MS, SKIP_SECONDS = 500, 3


def _run(tmp_path, skip_seconds: int) -> tuple[int, int, dict]:
    """(WAITs the primary saw, session-writing answers confirmed, statuses) over SECONDS of load."""
    env = {
        "QUIZAPP_ENV": "test",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "REDIS_WAIT_REPLICAS": "1",
        "REDIS_WAIT_TIMEOUT_MS": str(WAIT_TIMEOUT_MS),
        "REDIS_WAIT_SKIP_SECONDS": str(skip_seconds),
        "QUIZ_DAILY_QUOTA": "1000000",
        "QUIZ_ADDRESS_DAILY_QUOTA": "1000000",
    }
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    (tmp_path / f"skip{skip_seconds}").mkdir()
    with Stack(tmp_path / f"skip{skip_seconds}", instances=INSTANCES, workers=1, env=env) as stack:
        before = _wait_calls(client)
        load = QuizLoad(stack.url, clients=CLIENTS, think=0.01).start()
        time.sleep(SECONDS)
        load.stop()
        waits = _wait_calls(client) - before
    statuses: dict[int, int] = {}
    for _, _, _, status in load.records:
        statuses[status] = statuses.get(status, 0) + 1
    answers = sum(1 for _, _, label, status in load.records if label == "answer" and status == 303)
    return waits, answers, statuses


def test_session_writes_skip_an_unanswered_wait_under_load(tmp_path):
    waits, answers, statuses = _run(tmp_path, SKIP_SECONDS)
    report = {"waits": waits, "answers": answers, "statuses": statuses}
    print("replica missing, skipping:", report)
    assert set(statuses) <= {200, 303}, report  # nothing refused, nothing lost
    # Each worker: the writes in flight when a WAIT first came back short, then one per interval.
    bound = INSTANCES * (CLIENTS + SECONDS / SKIP_SECONDS + 1)
    assert 0 < waits <= bound, report
    # Each answer is a session write: far more of them than WAITs (with every write waiting 500 ms,
    # 6 clients could confirm at most 6 x 8 s / 0.5 s = 96 in the whole run).
    assert answers > 3 * waits, report
