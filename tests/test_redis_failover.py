"""Redis Sentinel: kill the primary under quiz load; 503s only during the switch, sessions and budget kept."""

from __future__ import annotations

import os
import time

import gevent
import pytest
import requests

from devstack.fake_openai import FakeOpenAIProcess, max_starts_in_window
from devstack.processes import free_port, free_port_block
from devstack.redis_ha import RedisHA
from devstack.stack import Stack
from tests.support.quiz_load import QuizLoad, answered_count, lost_writes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AI_RPM, AI_WINDOW = 6, 4.0
SETTLE_SECONDS = 5.0  # the bound: normal service within 5 s of Sentinel's failover
KEPT_SESSIONS = 12


@pytest.fixture
def redis_ha(tmp_path):
    # Not 1000: a Sentinel that switches to the new primary links to it afresh and sends its first
    # PING about a ping period (1 s) later; with down-after equal to that period, a busy box let all
    # three read the new primary as down and fail over a second time, back to the restarted node
    # (split brain for ~11 s: writes lost, 400s, WAIT unanswered; CI at 8e34be4, and a local run).
    ha = RedisHA(tmp_path / "redis-ha", free_port_block(5), service=f"qa{os.getpid()}", down_after_ms=2000)
    try:
        yield ha.start()
    finally:
        ha.stop()


def sentinel_env(ha: RedisHA, fake: FakeOpenAIProcess) -> dict:
    return {
        "REDIS_SENTINELS": ha.sentinels,
        "REDIS_SENTINEL_SERVICE": ha.service,
        "REDIS_URL": f"redis://127.0.0.1:{ha.base_port}/0",  # host unused behind Sentinel: db 0
        "REDIS_WAIT_REPLICAS": "1",
        "REDIS_WAIT_TIMEOUT_MS": "500",
        "REDIS_SOCKET_TIMEOUT": "3",  # a dead primary refuses at once; a busy machine is slow
        "RATELIMIT_ENABLED": "true",  # the limiter's redis+sentinel:// storage is part of the test
        "RATELIMIT_DEFAULT": "100000/minute",
        "RATELIMIT_SUBMIT": "100000/minute",
        "RATELIMIT_PERSON_TOTAL": "100000/minute",
        "RATELIMIT_ADDRESS_PAGES": "100000/minute",
        "RATELIMIT_VISITOR_PAGES": "100000/minute",
        "RATELIMIT_NEW_SESSIONS": "100000/minute",
        "QUIZ_DAILY_QUOTA": "1000000",
        "QUIZ_ADDRESS_DAILY_QUOTA": "1000000",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_TIMEOUT": "3",
        "AI_RPM": str(AI_RPM),
        "AI_WINDOW_SECONDS": str(AI_WINDOW),
        "AI_DEADLINE_SECONDS": "20",
        "AI_LEASE_SECONDS": "5",
    }


def half_done_sessions(base: str, count: int) -> list[tuple[requests.Session, int]]:
    """Sessions with some answers recorded, to be found intact after the failover."""
    made = []
    walker = QuizLoad(base, clients=0)
    for index in range(count):
        http = requests.Session()
        walker.walk(http, stop_after=1 + index % 4)
        made.append((http, 1 + index % 4))
    assert walker.statuses().keys() <= {200, 303}, walker.statuses()
    return made


def split_by_phase(load: QuizLoad, event_at: float, settled_at: float) -> tuple[dict, dict, dict]:
    """Status counts answered before the event, sent once settled, and everything in between."""
    phases: tuple[dict, dict, dict] = ({}, {}, {})
    for sent, answered, _, status in load.records:
        phase = phases[0] if answered < event_at else phases[2] if sent >= settled_at else phases[1]
        phase[status] = phase.get(status, 0) + 1
    return phases


def wait_for_calls(fake: FakeOpenAIProcess, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(fake.calls()["calls"]) < count:
        assert time.monotonic() < deadline, f"fewer than {count} AI calls within {timeout}s"
        gevent.sleep(0.5)


def wait_new_primary(ha: RedisHA, old_port: int, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ha.primary_port() not in (None, old_port):
            return time.monotonic()
        gevent.sleep(0.05)
    raise AssertionError(f"Sentinel did not promote the replica within {timeout}s")


def wait_replica_online(ha: RedisHA, port: int) -> float:
    """The time the restarted node is an online replica of the new primary (polled every 0.1 s)."""
    while not ha.replica_online(port):
        gevent.sleep(0.1)
    return time.monotonic()


def test_killing_the_primary_under_load(redis_ha, tmp_path, migrated_database):
    fake = FakeOpenAIProcess(free_port(), latency=0.2, rpm=100000).start()
    stack = Stack(tmp_path, instances=2, workers=1, env=sentinel_env(redis_ha, fake))
    try:
        with stack:
            kept = half_done_sessions(stack.url, KEPT_SESSIONS)
            load = QuizLoad(stack.url, clients=6).start()
            # Kill with the AI window full: the new primary must remember those starts.
            wait_for_calls(fake, AI_RPM)
            old_primary = redis_ha.primary_port()
            killed_at = redis_ha.kill(old_primary)
            promoted_at = wait_new_primary(redis_ha, old_primary)
            promoted_wall = time.time()  # the fake OpenAI stamps its calls with wall-clock time
            # As systemd would: the old primary comes back, and Sentinel makes it a replica.
            redis_ha.restart(old_primary)
            rejoined = gevent.spawn(wait_replica_online, redis_ha, old_primary)
            gevent.sleep(SETTLE_SECONDS + 6)
            load.stop()
            rejoined.kill()
            answers_kept = sum(answered_count(stack.url, http.cookies) == n for http, n in kept)
            for http, _ in kept:
                http.close()
            calls = fake.calls()["calls"]
    finally:
        fake.stop()
    before, during, settled = split_by_phase(load, killed_at, promoted_at + SETTLE_SECONDS)
    report = {
        "failover_s": round(promoted_at - killed_at, 2),
        "before": before,
        "during": during,
        "settled": settled,
        "last_503_after_promotion_s": round(
            max((r[1] for r in load.records if r[3] == 503), default=promoted_at) - promoted_at, 2
        ),
        # Until the old primary is back in sync, durable writes wait out REDIS_WAIT_TIMEOUT_MS and AI
        # calls pause: a late rejoin shows here, not as a mystery slowdown of the settled window.
        "replica_back_after_promotion_s": (
            # killed before the node was back: the value is the GreenletExit, reported as None
            round(rejoined.value - promoted_at, 2) if isinstance(rejoined.value, float) else None
        ),
        "sessions_kept": f"{answers_kept}/{len(kept)}",
        "confirmed_writes": len(load.confirmed),
        "ai_calls": len(calls),
        "ai_calls_after_promotion": sum(call["start"] > promoted_wall for call in calls),
        "ai_max_in_window": max_starts_in_window([c["start"] for c in calls], AI_WINDOW),
    }
    print("redis failover:", report)
    assert set(before) <= {200, 303}, report
    assert set(during) <= {200, 303, 503}, report  # no 500/502/504, no dropped connection
    # Settled: no 500/502/504 ever. A few 503s may still come when the restarted old primary
    # rejoins as a replica and resyncs (session writes wait for a replica). CI saw 3, then 6, 12 s
    # after the promotion: the second failover above, undone 12 s later (down-after is now 2000).
    assert set(settled) <= {200, 303, 503}, report
    assert settled.get(503, 0) <= 5, report
    assert settled.get(200, 0) > 20, report  # the app kept serving after the switch
    assert answers_kept == len(kept), report
    assert lost_writes(migrated_database, load.confirmed) == 0, report
    assert report["ai_max_in_window"] <= AI_RPM, report
    assert len(calls) > report["ai_calls_after_promotion"] > 0, report  # budget used on both sides
