"""Admission control: priorities per worker, the cluster-wide FIFO waiting room and its costs."""

import re
import time

import gevent
import pytest
from redis.connection import AbstractConnection

from devstack.forms import csrf_token
from quizapp.admission.gate import InFlightGate, Priority
from quizapp.admission.repository import STATE_KEY
from tests.support.admin_session import forge_admin_session

JSON = {"Accept": "application/json"}


def _login(client):
    forge_admin_session(client, user="ops-admin")


def test_gate_hands_freed_slots_out_by_priority_and_never_blocks_critical():
    gate = InFlightGate(limit=1)
    assert gate.enter(Priority.NEW, timeout=0)
    order = []

    def wait(priority):
        assert gate.enter(priority, timeout=30)
        order.append(priority)
        gate.leave(priority)

    waiters = [gevent.spawn(wait, p) for p in (Priority.NEW, Priority.ADMITTED, Priority.STARTED)]
    gevent.sleep(0.05)
    assert gate.enter(Priority.CRITICAL, timeout=0)  # full, yet the webhook/health/admin runs
    gate.leave(Priority.CRITICAL)
    assert not gate.enter(Priority.NEW, timeout=0.01)  # a new visitor is turned away meanwhile
    assert gate.enter(Priority.STARTED, timeout=0.01, admit_on_timeout=True)  # a started one is not
    gate.leave(Priority.STARTED)
    gate.leave(Priority.NEW)
    gevent.joinall(waiters, timeout=10, raise_error=True)
    assert order == [Priority.STARTED, Priority.ADMITTED, Priority.NEW]
    assert gate.in_flight == 0 and gate.waiting() == 0


@pytest.fixture
def small_app(make_app):
    # The capacity rule alone (pacing: tests/test_admission_pace.py).
    return make_app(
        ADMISSION_CAPACITY=2, ADMISSION_PACE_PER_SECOND="off", CSRF_ENABLED="false", RATELIMIT_ENABLED="false"
    )


def _count_io(app, monkeypatch):
    """Count Redis commands and Postgres checkouts made by the app's own clients."""
    counts = {"redis": 0, "pg": 0}
    pool = app.extensions["db_pool"]
    real_send, real_acquire = AbstractConnection.send_packed_command, pool.acquire

    def send(*args, **kwargs):  # every round trip, whichever client path sends it (pipelines too)
        counts["redis"] += 1
        return real_send(*args, **kwargs)

    def acquire(*args, **kwargs):
        counts["pg"] += 1
        return real_acquire(*args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    monkeypatch.setattr(pool, "acquire", acquire)
    return counts


def test_waiting_room_page_json_refresh_and_costs(small_app, monkeypatch, redis_client):
    first, second = small_app.test_client(), small_app.test_client()
    assert first.get("/").status_code == 200 and second.get("/").status_code == 200
    counts = _count_io(small_app, monkeypatch)
    waiting = small_app.test_client()
    page = waiting.get("/")
    assert page.status_code == 503 and page.headers["X-Admission"] == "wait"
    html = page.get_data(as_text=True)
    refresh = int(page.headers["Retry-After"])
    assert f'<meta http-equiv="refresh" content="{refresh}; url=/">' in html and "<script" not in html
    assert "Your place in line: <strong>1</strong>" in html
    assert "bizmodel.sid" not in page.headers.get("Set-Cookie", "")  # no server session minted
    assert counts == {"redis": 1, "pg": 0}  # one round trip, no Postgres
    api = small_app.test_client().get("/", headers=JSON)
    assert api.status_code == 503 and api.json["status"] == "waiting"
    assert api.json["position"] == 2 and api.json["queue_length"] == 2
    assert api.json["estimated_wait_seconds"] > 0 and api.json["retry_after"] == int(
        api.headers["Retry-After"]
    )
    for _ in range(3):  # refreshing keeps the place
        assert waiting.get("/", headers=JSON).json["position"] == 1
    assert counts["pg"] == 0
    redis_client.hset(STATE_KEY, "capacity", 3)  # room for one more: the head of the line
    assert waiting.get("/").status_code == 200
    assert small_app.test_client().get("/", headers=JSON).json["position"] == 2  # behind the API client


def test_started_quiz_taker_is_admitted_while_new_visitors_wait(small_app):
    taker = small_app.test_client()
    assert taker.get("/").status_code == 200
    assert taker.post("/start").status_code == 303
    small_app.test_client().get("/")  # fills the second slot
    assert small_app.test_client().get("/").status_code == 503
    # The response that started the quiz flagged it in the signed cookie: no session read needed.
    assert taker.get_cookie("qa.adm").value.startswith("s.0.")
    question = taker.get("/").get_data(as_text=True)
    assert taker.get("/", headers=JSON).status_code == 200
    assert re.search(r"/q/", question)
    assert small_app.test_client().get("/healthz").status_code == 200  # critical paths bypass


def test_admin_changes_capacity_live_audited(small_app, pg_conn, redis_client):
    admin = small_app.test_client()
    _login(admin)
    page = admin.get("/admin/health").get_data(as_text=True)
    assert "Admission and waiting room" in page and "In flight" in page and "oldest waiting" in page
    assert "mean visit <strong>not measured yet</strong>" in page
    redis_client.hset(STATE_KEY, "visit_mean", 83_456)  # kept as quizzes are submitted
    assert "mean visit <strong>83.5 s</strong>" in admin.get("/admin/health").get_data(as_text=True)
    response = admin.post("/admin/admission/capacity", data={"capacity": "7"})
    assert response.status_code == 302
    assert redis_client.hget(STATE_KEY, "capacity") == b"7"
    assert admin.post("/admin/admission/capacity", data={"capacity": "lots"}).status_code == 400
    with pg_conn.cursor() as cur:
        cur.execute("SELECT actor, action, detail->>'capacity', detail->>'previous' FROM audit_log")
        assert cur.fetchall() == [("ops-admin", "admission.capacity", "7", "2")]


def test_shedding_load_raises_a_health_alert(small_app, redis_client):
    from quizapp.admission import admission_shedding_load
    from quizapp.health.alerts import INFO, HealthContext

    ctx = HealthContext(workers=[], checks={}, config=small_app.config, app=small_app)
    assert admission_shedding_load(ctx) is None
    for _ in range(3):
        small_app.test_client().get("/")
    ctx = HealthContext(workers=[], checks={}, config=small_app.config, app=small_app)
    alert = admission_shedding_load(ctx)
    assert alert.severity == INFO and "1 visitors in the waiting room" in alert.message


def test_a_submitted_quiz_frees_its_slot_for_the_next_in_line(make_app):
    from devstack.quiz_walk import answer_all, submit

    app = make_app(ADMISSION_CAPACITY=2, ADMISSION_PACE_PER_SECOND="off", RATELIMIT_ENABLED="false")
    taker, other, waiting = app.test_client(), app.test_client(), app.test_client()
    assert other.get("/").status_code == 200
    answer_all(taker, app.extensions["quiz_content"])  # admitted second: ticket 1, carried when started
    assert taker.get_cookie("qa.adm").value.startswith("s.1.")
    assert waiting.get("/", headers=JSON).json["position"] == 1
    assert submit(taker).status_code == 303
    assert waiting.get("/").status_code == 200  # the slot freed at once, not when its time ran out
    assert app.test_client().get("/", headers=JSON).status_code == 503  # and only that one slot


def test_waiting_visitors_come_back_when_their_turn_should_come(small_app):
    from quizapp.admission import service
    from quizapp.admission.repository import Decision

    def answer(turn_s, ticket=0, queue=400, pace_milli=0, position=10, rate_milli=2000):
        decision = Decision(False, ticket, position, queue, 2, 2, rate_milli, pace_milli, turn_s * 1000)
        return service.waiting_answer(decision)

    def refreshes(turn_s, queue=400, tickets=range(100, 150)):
        return {answer(turn_s, ticket=t, queue=queue).refresh_s for t in tickets}

    with small_app.app_context():
        soon = answer(3)  # the slots say 3 s to go
        assert (soon.estimated_wait_s, soon.refresh_s) == (3, 5)  # the minimum interval
        assert answer(50).estimated_wait_s == 50
        # Come back when the wait should be over, spread by ticket over a fifth of it, centred
        # (no bursts: visitors told the same wait at once do not all come back in one second).
        assert refreshes(50) == set(range(45, 56))
        assert refreshes(100) == set(range(90, 111))
        assert refreshes(3) == {5, 6, 7}  # near the minimum: all later, never under it
        # Capped at 120 s (capacity raises show), the spread then all earlier...
        assert answer(1000, queue=150).estimated_wait_s == 1000
        assert refreshes(1000, queue=150) == set(range(96, 121))
        # ...unless polling every 2 minutes would exceed 5% of the pages served (2 visitors/s x
        # 17 pages): the cap grows with the queue, to 400 / 1.7 = 236 s.
        assert max(refreshes(1000, queue=400)) == 236
        assert service.refresh_cap(400, 2.0) == 236 and service.refresh_cap(150, 2.0) == 120
        paced = answer(3, pace_milli=500)  # a 0.5/s pace: 10 visitors ahead take 20 s, slots or not
        assert paced.estimated_wait_s == 20


def test_the_wait_estimate_follows_the_visits_in_the_slots(make_app, redis_client):
    """A full cluster's next turn comes when its oldest visit reaches the mean visit length."""
    from quizapp.admission import service
    from quizapp.admission.repository import ACTIVE_KEY, STATE_KEY

    app = make_app(ADMISSION_CAPACITY=3, ADMISSION_PACE_PER_SECOND="off", RATELIMIT_ENABLED="false")
    with app.app_context():
        store = service.store(app)
        now = int(time.time() * 1000)
        visit_ms = app.config["ADMISSION_VISIT_SECONDS"] * 1000
        # Three visits, started 50, 30 and 10 s ago; visits last 60 s on average.
        for ticket, age in ((0, 50), (1, 30), (2, 10)):
            redis_client.zadd(ACTIVE_KEY, {f"t{ticket}": now - age * 1000 + visit_ms})
        redis_client.hset(STATE_KEY, mapping={"next": 3, "served": 3, "visit_mean": 60_000})

        def wait(ticket=None):
            decision = store.admit(now_ms=now, capacity=3, probation_ms=30_000, ticket=ticket)
            assert not decision.admitted
            return decision

        first, second, third, fourth = wait(), wait(), wait(), wait()
        assert [round(d.turn_ms / 1000) for d in (first, second, third)] == [10, 30, 50]
        assert round(fourth.turn_ms / 1000) == 70  # a whole visit after the first slot frees again
        # A slot's cycle is its visit plus the time its next visitor takes to claim it: each round
        # past the first slot's also waits for the claim (measured below, by confirm()).
        redis_client.hset(STATE_KEY, "claim_mean", 5_000)
        assert round(wait(fourth.ticket).turn_ms / 1000) == 75
        assert round(wait(first.ticket).turn_ms / 1000) == 10  # the first round: the slot itself
        redis_client.hdel(STATE_KEY, "claim_mean")
        assert wait(first.ticket).turn_ms == first.turn_ms  # a refresh: the same place, the same turn
        assert 10 <= service.waiting_answer(first).estimated_wait_s <= 11
        # The first visit ends after 55 s: its slot frees and the mean moves towards 55 s.
        assert store.release(0, now_ms=now + 5_000, visit_seconds=visit_ms // 1000)
        assert int(redis_client.hget(STATE_KEY, "visit_mean")) == 60_000 + (55_000 - 60_000) // 32
        assert not store.release(0, now_ms=now + 5_000, visit_seconds=visit_ms // 1000)  # once only


def test_slots_on_probation_free_last_in_the_wait_estimate(make_app, redis_client):
    """A slot just handed out sorts first (its score is the hand-out + the probation) but frees
    only after its visitor's claim and a whole visit: the estimate counts it last in the round.
    How many there are: the admission rate x the mean claim time."""
    from quizapp.admission import service
    from quizapp.admission.repository import ACTIVE_KEY, STATE_KEY

    app = make_app(ADMISSION_CAPACITY=3, ADMISSION_PACE_PER_SECOND="off", RATELIMIT_ENABLED="false")
    with app.app_context():
        store = service.store(app)
        now = int(time.time() * 1000)
        visit_ms = app.config["ADMISSION_VISIT_SECONDS"] * 1000
        # One slot handed out 2 s ago (on probation), two visits started 30 and 10 s ago.
        redis_client.zadd(ACTIVE_KEY, {"t0": now - 2_000 + 30_000})
        for ticket, age in ((1, 30), (2, 10)):
            redis_client.zadd(ACTIVE_KEY, {f"t{ticket}": now - age * 1000 + visit_ms})
        # Visits last 60 s, a claim 4 s, 0.25 visitors admitted a second: one slot on probation.
        redis_client.hset(
            STATE_KEY,
            mapping={"next": 3, "served": 3, "visit_mean": 60_000, "claim_mean": 4_000, "rate": 250},
        )

        def turn_s(ticket=None):
            decision = store.admit(now_ms=now, capacity=3, probation_ms=30_000, ticket=ticket)
            assert not decision.admitted
            return round(decision.turn_ms / 1000)

        # The two visits end at 60 s, then the slot on probation (claim + visit), then a round on.
        assert [turn_s() for _ in range(4)] == [30, 50, 64, 94]
        # Unmeasured (no claim yet): every slot by its score, the one on probation as overdue.
        redis_client.hdel(STATE_KEY, "claim_mean")
        assert [turn_s(ticket) for ticket in (3, 4, 5)] == [0, 30, 50]


def test_a_slot_is_on_probation_until_a_quiz_starts(make_app, redis_client):
    from quizapp.admission.repository import ACTIVE_KEY

    app = make_app(ADMISSION_CAPACITY=5, RATELIMIT_ENABLED="false")
    visitor = app.test_client()
    landing = visitor.get("/")
    assert landing.status_code == 200
    (slot, held_until), *_ = redis_client.zrange(ACTIVE_KEY, 0, -1, withscores=True)
    now_ms = time.time() * 1000
    assert now_ms + 20_000 < held_until <= now_ms + 31_000  # 30 s: a visitor who never starts
    visitor.post("/start", data={"csrf_token": csrf_token(landing)})
    held_until = redis_client.zscore(ACTIVE_KEY, slot)
    visit_ms = app.config["ADMISSION_VISIT_SECONDS"] * 1000
    assert held_until > time.time() * 1000 + visit_ms - 5_000  # confirmed for the whole visit


def test_starting_a_quiz_measures_how_long_a_handed_out_slot_waited_for_its_visitor(make_app, redis_client):
    """The claim time (hand-out to start) is part of every slot's cycle: confirm() measures it on
    a slot still on probation, and only there."""
    from quizapp.admission import service
    from quizapp.admission.repository import ACTIVE_KEY, STATE_KEY

    app = make_app(ADMISSION_CAPACITY=5, RATELIMIT_ENABLED="false")
    with app.app_context():
        store = service.store(app)
        now = int(time.time() * 1000)
        visit_until = now + 120_000
        # Two slots handed out 4 s and 12 s ago (on probation: the hand-out + 30 s).
        redis_client.zadd(ACTIVE_KEY, {"t0": now - 4_000 + 30_000, "t1": now - 12_000 + 30_000})
        assert store.confirm(0, until_ms=visit_until, now_ms=now, probation_ms=30_000)
        assert int(redis_client.hget(STATE_KEY, "claim_mean")) == 4_000
        assert store.confirm(1, until_ms=visit_until, now_ms=now, probation_ms=30_000)
        assert int(redis_client.hget(STATE_KEY, "claim_mean")) == 4_000 + (12_000 - 4_000) // 32
        assert redis_client.zscore(ACTIVE_KEY, "t1") == visit_until  # held for the whole visit
        # A confirmed slot confirmed again (a restarted quiz), or one that lapsed: not a claim.
        assert not store.confirm(1, until_ms=visit_until + 1, now_ms=now + 1, probation_ms=30_000)
        assert not store.confirm(7, until_ms=visit_until, now_ms=now, probation_ms=30_000)
        assert redis_client.zscore(ACTIVE_KEY, "t7") == visit_until  # re-taken, as before
        assert int(redis_client.hget(STATE_KEY, "claim_mean")) == 4_250
        assert store.snapshot(now_ms=now)["mean_claim_s"] == 4.2
        # Through the app: a visitor admitted from the line who starts claims their slot.
        redis_client.delete(ACTIVE_KEY, STATE_KEY)
    visitor = app.test_client()
    landing = visitor.get("/")
    visitor.post("/start", data={"csrf_token": csrf_token(landing)})
    assert 0 <= int(redis_client.hget(STATE_KEY, "claim_mean")) < 10_000


def test_a_cookie_dropping_client_cannot_flood_the_line(make_app, redis_client):
    from quizapp.admission.repository import ACTIVE_KEY

    app = make_app(ADMISSION_CAPACITY=1000, RATELIMIT_VISITOR_PAGES="10/minute")
    flood = [app.test_client().get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}) for _ in range(25)]
    assert [r.status_code for r in flood] == [200] * 10 + [429] * 15
    assert all(r.headers["X-Admission"] == "refused" and "Retry-After" in r.headers for r in flood[10:])
    assert redis_client.zcard(ACTIVE_KEY) == 10  # refused arrivals took no slot (nor a ticket)
    other = app.test_client().get("/", environ_base={"REMOTE_ADDR": "203.0.113.10"})
    assert other.status_code == 200  # another address is not affected


def test_a_full_worker_answers_with_the_waiting_page_marked_busy(make_app):
    from quizapp.admission import service

    app = make_app(ADMISSION_MAX_IN_FLIGHT=1, ADMISSION_QUEUE_TIMEOUT_MS=0, RATELIMIT_ENABLED="false")
    gate = service.gate(app)
    assert gate.enter(Priority.NEW, timeout=0)  # the worker's one slot is taken
    try:
        page = app.test_client().get("/")
        assert page.status_code == 503 and page.headers["X-Admission"] == "busy"
        assert "Retry-After" in page.headers and gate.shed_total == 1
    finally:
        gate.leave(Priority.NEW)
    assert app.test_client().get("/").status_code == 200


def test_a_slot_handed_over_as_the_wait_times_out_is_kept(monkeypatch):
    from quizapp.admission import gate as gate_module

    gate = InFlightGate(limit=1)
    assert gate.enter(Priority.NEW, timeout=0)

    class LateEvent(gate_module.Event):
        def wait(self, timeout=None):  # the holder leaves just as our timeout fires
            gate.leave(Priority.NEW)
            return False

    monkeypatch.setattr(gate_module, "Event", LateEvent)
    assert gate.enter(Priority.NEW, timeout=0.01)  # was: ValueError, and the slot leaked
    assert gate.in_flight == 1 and gate.waiting() == 0
    gate.leave(Priority.NEW)
    assert gate.in_flight == 0


def test_the_door_hands_an_admitted_ticket_holder_to_the_pool_in_one_round_trip(
    make_app, redis_client, monkeypatch
):
    door = make_app(
        ADMISSION_CAPACITY=1,
        ADMISSION_DOOR="true",
        ADMISSION_PACE_PER_SECOND="off",
        CSRF_ENABLED="false",
        RATELIMIT_ENABLED="false",
    )
    assert door.test_client().get("/").status_code == 200  # no cookie: rendered here (no redirect loop)
    waiting = door.test_client()
    html = waiting.get("/?from=ad").get_data(as_text=True)
    assert "Your place in line: <strong>1</strong>." in html
    # 1 in line, 1 slot just handed out: it frees a visit later (half of 120 s until visits are measured).
    assert re.search(r"Estimated wait: <strong>(about a|under a) minute</strong>", html)
    redis_client.hset(STATE_KEY, "capacity", 2)
    counts = _count_io(door, monkeypatch)
    sent_on = waiting.get("/?from=ad")
    # A page view is handed to the pool inside nginx (its /@pool/ location), the pass in the URI.
    assert (sent_on.status_code, "Location" in sent_on.headers) == (200, False)
    assert sent_on.headers["X-Admission"] == "admit" and not sent_on.get_data()
    assert counts == {"redis": 1, "pg": 0}
    granted = waiting.get_cookie("qa.adm").value
    assert granted.startswith("p.") and sent_on.headers["X-Accel-Redirect"] == f"/@pool/{granted}"
    assert waiting.get("/?from=ad").status_code == 200  # a pass holder is served, never sent on
    holder = door.test_client()
    assert holder.get("/").status_code == 503
    redis_client.hset(STATE_KEY, "capacity", 10)
    again = holder.post("/start")  # a form post is sent on as it was: 307 keeps method and body
    assert (again.status_code, again.headers["Location"]) == (307, "/start")
    redis_client.hset(STATE_KEY, "capacity", 3)
    lured = door.test_client()
    assert lured.get("/").status_code == 503
    redis_client.hset(STATE_KEY, "capacity", 10)
    offsite = lured.post("/", environ_overrides={"PATH_INFO": "//evil.example/x"})
    assert offsite.headers["Location"] == "/evil.example/x"  # never "//evil.example": another site
