"""The hot path's lean Redis caller (quizapp/redis_fast.py) against the real Redis: exact under
concurrency, never reuses a half-read socket, recovers from dropped connections; and the app over
the local Redis's Unix socket."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import gevent
import pytest
import redis

from devstack.quiz_walk import csrf_from
from quizapp.redis_fast import FastCaller
from quizapp.security import ratecheck
from tests.conftest import REDIS_URL


@pytest.fixture
def lean(redis_client):
    client = redis.Redis.from_url(REDIS_URL)
    yield FastCaller(client, pipelined=False)  # the plain path; the pipeline: test_redis_pipeline.py
    client.close()


def test_many_greenlets_get_their_own_replies_and_exact_counts(lean, redis_client):
    def worker(n):
        for i in range(20):
            assert lean("SET", f"fast:{n}", f"{n}-{i}") == b"OK"
            assert lean("GET", f"fast:{n}") == f"{n}-{i}".encode()  # nobody else's reply
            lean("INCR", "fast:total")

    gevent.joinall([gevent.spawn(worker, n) for n in range(50)], raise_error=True)
    assert int(redis_client.get("fast:total")) == 1000
    assert 1 <= len(lean.idle) <= 50  # connections are kept and reused, not one per call


def test_a_call_killed_mid_reply_never_hands_its_reply_to_the_next(lean, redis_client):
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.1):
        lean("BLPOP", "fast:list", 2)  # killed while Redis still owes it a reply
    assert lean.idle == []  # that socket was closed, not kept
    redis_client.rpush("fast:list", "x")
    assert lean("PING") in (b"PONG", "PONG")
    assert redis_client.lrange("fast:list", 0, -1) == [b"x"]  # the dead BLPOP took nothing


def test_dropped_connections_are_replaced_without_an_error(lean, redis_client):
    for _ in range(3):
        gevent.joinall([gevent.spawn(lean, "PING") for _ in range(5)])
    assert lean.idle
    killed = redis_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert lean("INCR", "fast:after") == 1  # a stale socket fails once, a fresh one answers


def test_an_error_reply_keeps_the_connection_usable(lean):
    lean("SET", "fast:str", "a")
    with pytest.raises(redis.exceptions.ResponseError):
        lean("INCR", "fast:str")
    assert lean("GET", "fast:str") == b"a"


def test_a_script_redis_lost_is_loaded_again_once(lean):
    script = redis.Redis.from_url(REDIS_URL).register_script("return redis.call('INCR', KEYS[1]) + ARGV[1]")
    assert lean.evalsha(script, ["fast:script"], [10]) == 11
    lean("SCRIPT", "FLUSH")  # as after a restart or a failover to a replica without it
    assert lean.evalsha(script, ["fast:script"], [10]) == 12  # loaded again, run exactly once more
    assert lean("GET", "fast:script") == b"2"


def test_the_app_over_the_local_redis_unix_socket(make_app):
    socket = os.environ.get("QUIZAPP_REDIS_SOCKET", "")
    if not socket or not os.path.exists(socket):
        pytest.skip("the local Redis has no Unix socket (a checkout path too long for sun_path)")
    db = urlparse(REDIS_URL).path.lstrip("/") or "0"
    app = make_app(REDIS_URL=f"unix://{socket}?db={db}", RATELIMIT_DEFAULT="4/minute")
    checker = app.extensions[ratecheck.CHECKER_KEY]
    assert checker.same_store  # the session is read in the limits call, over the socket too
    client = app.test_client()
    landing = client.get("/")
    assert client.post("/start", data={"csrf_token": csrf_from(landing)}).status_code == 303
    assert [client.get("/review").status_code for _ in range(5)] == [200] * 4 + [429]


def test_a_blocking_pool_gets_every_connection_back():
    """Greenlets waiting on a bounded blocking pool are never starved by idle kept connections."""
    pool = redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=5, timeout=5)
    lean = FastCaller(redis.Redis(connection_pool=pool), pipelined=False)
    results = gevent.joinall(
        [gevent.spawn(lean, "INCR", "fast:blocking") for _ in range(50)], raise_error=True
    )
    assert sorted(g.value for g in results) == list(range(1, 51)) and lean.idle == []
    pool.disconnect()


def test_kept_connections_leave_most_of_a_small_pool_to_others():
    lean = FastCaller(redis.Redis.from_url(REDIS_URL, max_connections=16), pipelined=False)
    gevent.joinall([gevent.spawn(lean, "PING") for _ in range(30)])
    assert len(lean.idle) <= 2  # 16 // 8
