"""Admission pacing: the waiting room's token bucket (burst, refill, FIFO, off, live and audited)."""

import random
import time

import gevent
import redis

from quizapp.admission import admission_status
from quizapp.admission.repository import (
    ACTIVE_KEY,
    PACE_DERIVED,
    PACE_OFF,
    STATE_KEY,
    WaitingRoomStore,
    burst_of,
    pace_in_effect,
)
from tests.conftest import REDIS_URL
from tests.support.admin_session import forge_admin_session

JSON = {"Accept": "application/json"}
PROBATION_MS = 30_000


def _admit(store, now_ms, *, capacity=10_000, pace_milli=PACE_DERIVED, burst_seconds=5, ticket=None):
    return store.admit(
        now_ms=now_ms,
        capacity=capacity,
        probation_ms=PROBATION_MS,
        ticket=ticket,
        pace_milli=pace_milli,
        burst_seconds=burst_seconds,
        visit_seconds=120,
    )


def _together(calls):
    """Run the calls in concurrent greenlets; their results in the order given."""
    greenlets = [gevent.spawn(call) for call in calls]
    gevent.joinall(greenlets, raise_error=True)
    return [g.value for g in greenlets]


def _ticket(client) -> int:
    return int(
        client.get_cookie("qa.adm").value.split(".")[1]
    )  # "p.<ticket>.<expiry>.<sig>", "w.<ticket>.<sig>"


def test_a_crowd_gets_the_burst_at_once_then_the_pace_in_fifo_order(make_app, redis_client):
    # One visitor per 10 s in bursts of 10: a slow box adds no token while the crowd arrives.
    pace = {"ADMISSION_PACE_PER_SECOND": "0.1", "ADMISSION_PACE_BURST_SECONDS": "100"}
    app = make_app(ADMISSION_CAPACITY=1000, RATELIMIT_ENABLED="false", **pace)
    clients = [app.test_client() for _ in range(25)]

    def arrive(client, i):
        return lambda: client.get("/", headers=JSON, environ_base={"REMOTE_ADDR": f"198.51.100.{i + 1}"})

    answers = _together([arrive(c, i) for i, c in enumerate(clients)])
    admitted = [c for c, a in zip(clients, answers, strict=True) if a.status_code == 200]
    waiting = sorted(
        (a.json["position"], _ticket(c))
        for c, a in zip(clients, answers, strict=True)
        if a.status_code == 503
    )
    assert len(admitted) == 10  # the burst, with room for 1000
    assert sorted(_ticket(c) for c in admitted) == list(range(10))
    assert waiting == [(p, 9 + p) for p in range(1, 16)]  # the rest in line, first come first served
    # 60 s later (injected, not slept): 6 more, from the head of the line; a newcomer queues behind.
    store = WaitingRoomStore(redis_client)
    later = int(redis_client.hget(STATE_KEY, "tokens_t")) + 60_000
    as_configured = {"capacity": 1000, "pace_milli": 100, "burst_seconds": 100}
    newcomer = _admit(store, later, **as_configured)
    assert not newcomer.admitted and (newcomer.position, newcomer.queue_length) == (10, 10)
    outcomes = [_admit(store, later, ticket=t, **as_configured) for _, t in waiting]
    assert [d.admitted for d in outcomes] == [True] * 6 + [False] * 9
    assert [d.position for d in outcomes[6:]] == list(range(1, 10))
    assert outcomes[6].pace_milli == 100


def test_pace_off_is_the_capacity_alone_and_auto_follows_the_live_capacity(redis_client):
    store, now = WaitingRoomStore(redis_client), int(time.time() * 1000)
    off = [_admit(store, now, capacity=50, pace_milli=PACE_OFF) for _ in range(60)]
    assert sum(d.admitted for d in off) == 50 and off[-1].pace_milli == 0  # today's behaviour
    redis_client.delete(STATE_KEY, ACTIVE_KEY)
    # auto: 2 x capacity / visit = 10/s for 600 (burst 50), 20/s once the capacity is raised live.
    auto = [_admit(store, now, capacity=600) for _ in range(60)]
    assert sum(d.admitted for d in auto) == 50 and auto[0].pace_milli == 10_000
    redis_client.hset(STATE_KEY, "capacity", 1200)  # an admin's (or the bench's) live change
    later = [_admit(store, now + 1000, capacity=600) for _ in range(15)]  # 1 s at 20/s: 20 tokens
    assert sum(d.admitted for d in later) == 10 and later[-1].position == 5  # after the 10 in line
    assert int(redis_client.hget(STATE_KEY, "served")) == 70 and later[0].pace_milli == 20_000
    # The defaults: 2000 visitors, 120 s visits -> 33.3/s in bursts of 166: a classroom walks in.
    assert burst_of(pace_in_effect(PACE_DERIVED, capacity=2000, visit_seconds=120), burst_seconds=5) == 166


def test_concurrent_admissions_never_exceed_burst_plus_pace(redis_client):
    pool = redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=50, timeout=60)
    store, t0 = WaitingRoomStore(redis.Redis(connection_pool=pool)), int(time.time() * 1000)
    pace_milli, burst = 10_000, 50  # 10/s, 5 s of burst

    def wave(times):
        return _together([lambda t=t: _admit(store, t, pace_milli=pace_milli) for t in times])

    first = wave([t0] * 200)
    assert sum(d.admitted for d in first) == burst
    times = [t0 + 2000] + [t0 + random.randint(1, 2000) for _ in range(199)]
    random.shuffle(times)  # clocks of many workers: any order, never more than 2 s x 10/s more
    second = wave(times)
    assert not any(d.admitted for d in second)  # 150 were in line before them
    assert int(redis_client.hget(STATE_KEY, "served")) == burst + 20
    members = {m.decode() for m in redis_client.zrange(ACTIVE_KEY, 0, -1)}
    assert members == {f"t{i}" for i in range(burst + 20)}  # the head of the line, in order
    pool.disconnect()


def test_admin_changes_the_pace_live_audited_and_shown(make_app, pg_conn, redis_client):
    app = make_app(CSRF_ENABLED="false", RATELIMIT_ENABLED="false")
    admin = app.test_client()
    forge_admin_session(admin, user="ops-admin")
    assert admin.post("/admin/admission/pace", data={"pace": "3"}).status_code == 302
    assert redis_client.hget(STATE_KEY, "pace") == b"3000"
    with app.app_context():
        figures = admission_status(workers=[])
    assert (figures["pace_setting"], figures["pace_per_s"], figures["pace_burst"]) == ("3", 3.0, 15)
    page = admin.get("/admin/health").get_data(as_text=True)
    assert "3.0 new visitors per second" in page and "bursts of up to 15" in page
    for bad in ("fast", "0", "-2", "nan"):
        assert admin.post("/admin/admission/pace", data={"pace": bad}).status_code == 400
    assert admin.post("/admin/admission/pace", data={"pace": "off"}).status_code == 302
    with app.app_context():
        assert admission_status(workers=[])["pace_per_s"] == 0
    assert admin.post("/admin/admission/pace", data={"pace": "auto"}).status_code == 302
    with app.app_context():
        assert admission_status(workers=[])["pace_per_s"] == 33.33  # 2 x 2000 / 120
    with pg_conn.cursor() as cur:
        cur.execute("SELECT actor, action, detail->>'pace', detail->>'previous' FROM audit_log ORDER BY id")
        assert cur.fetchall() == [
            ("ops-admin", "admission.pace", "3", "auto"),
            ("ops-admin", "admission.pace", "off", "3"),
            ("ops-admin", "admission.pace", "auto", "off"),
        ]
