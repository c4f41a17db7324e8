"""AI analysis in one process against the fake upstream: queue, cache, dedup, deadline, poll page."""

import time

import gevent
import pytest
from flask import render_template

from devstack.fake_openai import synthetic_inputs
from quizapp.ai import service
from quizapp.ai.runtime import get_runtime, stop_runtime
from quizapp.ai.service import AnalysisStatus


@pytest.fixture
def ai_app(make_app, fake_openai):
    fake_openai.reset()
    fake_openai.set_mode(mode="ok", latency=0.2, rpm=600, window=60)
    apps = []

    def build(**overrides):
        settings = {
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": fake_openai.base_url,
            "OPENAI_TIMEOUT": 2,
            "AI_RPM": 100,
            "AI_WINDOW_SECONDS": 6,
            "AI_DEADLINE_SECONDS": 5,
            "AI_BREAKER_COOLDOWN": 1,
        }
        app = make_app(**{**settings, **overrides})
        apps.append(app)
        return app

    yield build
    for app in apps:
        stop_runtime(app)


def wait_final(app, subject_id, timeout=10.0):
    with app.app_context():
        get_runtime().queue.wait(subject_id, timeout=timeout)
        return service.analysis_status(subject_id)


def test_ai_off_gives_the_marked_algorithmic_analysis(make_app):
    app = make_app(OPENAI_API_KEY="")
    with app.app_context():
        status = service.request_analysis("s1", synthetic_inputs(1), "user-1")
    assert (status.state, status.fallback) == ("off", True)
    assert status.text.startswith("Your strongest fit is Software as a service")


def test_queued_then_done_and_poll_endpoint_from_another_app(ai_app, fake_openai):
    app = ai_app()
    with app.test_request_context():
        status = service.request_analysis("subj-a", synthetic_inputs("a"), "user-1")
    assert status.state == "queued" and status.position == 1 and status.eta_seconds >= 1
    final = wait_final(app, "subj-a")
    assert final.state == "done" and final.text.startswith("Fake AI analysis") and not final.fallback
    other = ai_app()  # another "worker": reads the same Redis job
    response = other.test_client().get("/api/analysis/subj-a")
    assert response.status_code == 200
    assert response.get_json()["state"] == "done" and response.get_json()["pending"] is False
    assert other.test_client().get("/api/analysis/nope").status_code == 404
    assert len(fake_openai.calls()["calls"]) == 1


def test_identical_prompts_share_one_upstream_call_then_the_cache(ai_app, fake_openai):
    app = ai_app(AI_PER_USER=100)
    inputs = synthetic_inputs("same")
    with app.test_request_context():
        for i in range(50):
            # Once the one call has answered, later requests are served from the cache at once.
            assert service.request_analysis(f"dup-{i}", inputs, f"user-{i}").state in (
                "queued",
                "done",
            )
    finals = [wait_final(app, f"dup-{i}") for i in range(50)]
    assert {f.state for f in finals} == {"done"} and len({f.text for f in finals}) == 1
    with app.test_request_context():
        later = service.request_analysis("dup-late", inputs, "user-late")
        metrics = service.metrics_snapshot()
    assert later.state == "done"
    assert len(fake_openai.calls()["calls"]) == 1
    assert metrics["calls"] == 1 and metrics["dedup_hits"] + metrics["cache_hits"] == 50


def test_per_user_cap_refuses_the_third(ai_app, fake_openai):
    fake_openai.set_mode(latency=1.0)
    app = ai_app(AI_PER_USER=2)
    with app.test_request_context():
        states = [
            service.request_analysis(f"cap-{i}", synthetic_inputs(i), "same-user").state for i in range(3)
        ]
        refused = service.request_analysis("cap-2", synthetic_inputs(2), "same-user")
    assert states == ["queued", "queued", "refused"]
    assert refused.fallback and "2 AI analyses" in refused.message
    assert {wait_final(app, f"cap-{i}").state for i in range(2)} == {"done"}
    with app.test_request_context():
        assert service.request_analysis("cap-2", synthetic_inputs(2), "same-user").state == "queued"
    assert wait_final(app, "cap-2").state == "done"


def _behind_a_hung_call(prefix: str, count: int) -> list[str]:
    """The states of `count` free jobs: the first is taken by the one dispatcher, which hangs on
    it (fake in "hang" mode), the rest arrive behind it."""
    states = [service.request_analysis(f"{prefix}-0", synthetic_inputs(0), "u0").state]
    gevent.sleep(0.3)  # the one dispatcher takes the first job and hangs on it
    states += [
        service.request_analysis(f"{prefix}-{i}", synthetic_inputs(i), f"u{i}").state for i in range(1, count)
    ]
    return states


def test_queue_full_gives_marked_fallback(ai_app, fake_openai):
    fake_openai.set_mode(mode="hang")
    app = ai_app(AI_QUEUE_MAX=3, AI_DISPATCHERS=1, AI_MAX_IN_FLIGHT=1, AI_PER_USER=100)
    with app.test_request_context():
        states = _behind_a_hung_call("full", 6)
        assert states == ["queued"] * 4 + ["fallback"] * 2
        rejected = service.analysis_status("full-5")
        assert rejected.fallback and "Many people" in rejected.message
        snapshot = service.metrics_snapshot()
        assert snapshot["queue_length"] == 3 and snapshot["counters"]["queue_full"] == 2
        assert service.reset_queue() == 3
        assert service.metrics_snapshot()["queue_length"] == 0
        assert "Our scoring model wrote" in service.analysis_status("full-1").message
    fake_openai.set_mode(mode="ok")


def test_a_free_job_the_budget_cannot_start_in_time_gets_the_fallback_at_once(ai_app, fake_openai):
    """2 calls per 6 s window and a 6 s deadline: two pending free jobs (one with the dispatcher,
    one queued) are all the budget can start in time; the next free ones are answered at once,
    marked, and a paid report still queues."""
    fake_openai.set_mode(mode="hang")
    app = ai_app(AI_RPM=2, AI_WINDOW_SECONDS=6, AI_DEADLINE_SECONDS=6, AI_DISPATCHERS=1, AI_PER_USER=100)
    assert service.free_pending_limit(app.config) == 2
    with app.test_request_context():
        states = _behind_a_hung_call("reach", 5)
        assert states == ["queued"] * 2 + ["fallback"] * 3
        at_once = service.analysis_status("reach-4")
        assert at_once.fallback and at_once.text and "Many people" in at_once.message
        paid = service.request_analysis("reach-paid", synthetic_inputs("p"), "payer", paid=True)
        assert paid.state == "queued" and paid.position == 1
        assert service.metrics_snapshot()["counters"]["queue_full"] == 3
        service.reset_queue()
    fake_openai.set_mode(mode="ok")


def test_the_free_pending_limit_follows_the_budget():
    defaults = {"AI_QUEUE_MAX": 500, "AI_RPM": 10, "AI_WINDOW_SECONDS": 60, "AI_DEADLINE_SECONDS": 60}
    assert service.free_pending_limit(defaults) == 10
    assert service.free_pending_limit({**defaults, "AI_DEADLINE_SECONDS": 150}) == 20  # whole windows
    assert service.free_pending_limit({**defaults, "AI_DEADLINE_SECONDS": 5}) == 10  # at least one
    assert service.free_pending_limit({**defaults, "AI_RPM": 3000}) == 3000  # AI_QUEUE_MAX apart
    assert service.free_pending_limit({"AI_QUEUE_MAX": 7}) == 7  # no budget settings (a health report)


def test_a_prompt_already_pending_is_never_turned_away(ai_app, fake_openai, redis_client):
    """At the limit, a job whose prompt is pending still queues: it shares that call. Every final
    state counts the pending prompts down again."""
    fake_openai.set_mode(latency=1.0)
    app = ai_app(AI_RPM=2, AI_WINDOW_SECONDS=6, AI_DEADLINE_SECONDS=6, AI_DISPATCHERS=1, AI_PER_USER=100)
    with app.test_request_context():
        first = service.request_analysis("twin-0", synthetic_inputs("same"), "u0")
        other = service.request_analysis("twin-1", synthetic_inputs("other"), "u1")
        assert first.state == other.state == "queued"
        assert service.request_analysis("twin-2", synthetic_inputs("third"), "u2").state == "fallback"
        assert service.request_analysis("twin-3", synthetic_inputs("same"), "u3").state == "queued"
    assert wait_final(app, "twin-3").state == "done"
    for subject in ("twin-0", "twin-1"):
        assert wait_final(app, subject).state == "done"
    assert redis_client.hlen("ai:pending_prompts") == 0


def test_hanging_upstream_ends_in_fallback_by_the_deadline(ai_app, fake_openai):
    fake_openai.set_mode(mode="hang")
    app = ai_app(AI_DEADLINE_SECONDS=1.5, OPENAI_TIMEOUT=10)
    started = time.monotonic()
    with app.test_request_context():
        service.request_analysis("slow-1", synthetic_inputs("slow"), "u1")
    final = wait_final(app, "slow-1")
    elapsed = time.monotonic() - started
    assert final.state == "fallback" and final.fallback and "too long" in final.message
    assert elapsed < 1.5 + 1.0  # the deadline holds to within a second, even on a busy machine
    fake_openai.set_mode(mode="ok")


def test_results_section_renders_pending_and_done(ai_app):
    app = ai_app()
    with app.test_request_context("/result/x"):
        queued = AnalysisStatus(state="queued", position=3, eta_seconds=2.0)
        html = render_template("ai/_analysis.html", analysis=queued, subject_id="x")
        head = render_template("ai/_analysis_head.html", analysis=queued)
        done = render_template(
            "ai/_analysis.html",
            analysis=AnalysisStatus(state="done", text="Hi"),
            subject_id="x",
        )
    assert 'data-poll-url="/api/analysis/x"' in html and "position 3, about 2 s" in html
    assert "js/analysis.js" in html and "<script>" not in html and 'href="/result/x"' in html
    assert 'http-equiv="refresh" content="3"' in head and 'data-poll-ms="3000"' in html
    assert "data-poll-url" not in done and "Hi" in done and "analysis.js" not in done


def test_a_long_queue_is_polled_slowly():
    """The script's poll and the no-script refresh follow the estimated wait, within 3-15 s: a
    crowd queued for the AI budget does not ask every two seconds."""
    paces = {
        (state, eta): AnalysisStatus(state=state, position=1, eta_seconds=eta).as_dict()["poll_ms"]
        for state, eta in (
            ("queued", 2.0),
            ("queued", 7.2),
            ("queued", 60.0),
            ("running", None),
            ("done", None),
        )
    }
    assert paces == {
        ("queued", 2.0): 3000,
        ("queued", 7.2): 8000,
        ("queued", 60.0): 15000,
        ("running", None): 3000,
        ("done", None): None,
    }


def test_paid_jobs_jump_the_queue(ai_app, fake_openai):
    fake_openai.set_mode(latency=1.0)  # free-0 keeps the one dispatcher busy while we queue and pay
    app = ai_app(AI_DISPATCHERS=1, AI_MAX_IN_FLIGHT=1, AI_PER_USER=100, AI_DEADLINE_SECONDS=10)
    with app.test_request_context():
        for i in range(4):
            service.request_analysis(f"free-{i}", synthetic_inputs(f"f{i}"), f"u{i}")
        # Free-0 is with the dispatcher now; free-1..3 wait in the queue.
        gevent.sleep(0.1)
        paid = service.request_analysis("paid-0", synthetic_inputs("p"), "payer", paid=True)
        assert paid.position == 1
        # The free job at the back pays: it moves ahead of every free job, behind earlier payers.
        promoted = service.request_analysis("free-3", synthetic_inputs("f3"), "u3", paid=True)
        assert promoted.position == 2
        store = get_runtime().store
        sent, real = [], store.fast
        store.fast = type("Counting", (), {"evalsha": lambda _, *a: sent.append(a) or real.evalsha(*a)})()
        try:
            assert service.analysis_status("free-1").position == 3
        finally:
            store.fast = real
        assert len(sent) == 1  # a queued job's poll: its fields and its rank in one round trip
    assert wait_final(app, "free-3").state == "done"
    with app.app_context():
        assert service.analysis_status("paid-0").state == "done"
        assert service.analysis_status("free-1").pending


def test_redis_outage_still_renders_the_marked_algorithmic_analysis(ai_app):
    app = ai_app(REDIS_URL="redis://127.0.0.1:1/0", REDIS_SOCKET_TIMEOUT=0.2)
    with app.test_request_context():
        status = service.request_analysis("down-1", synthetic_inputs(1), "u1")
    assert (status.state, status.fallback) == ("fallback", True)
    assert "unavailable" in status.message and status.text.startswith("Your strongest fit")


def test_a_waiter_takes_over_when_the_owner_of_a_shared_call_vanished(ai_app, fake_openai, redis_client):
    from quizapp.ai.calls import OWNER_PREFIX
    from quizapp.ai.prompts import prompt_fingerprint

    inputs = synthetic_inputs("orphan")
    # A worker that died while owning this prompt's call leaves its owner key until it expires.
    redis_client.set(OWNER_PREFIX + prompt_fingerprint(inputs, "gpt-4o-mini"), "dead", px=800)
    app = ai_app()
    with app.test_request_context():
        service.request_analysis("orphan-1", inputs, "u1")
    final = wait_final(app, "orphan-1")
    assert final.state == "done" and len(fake_openai.calls()["calls"]) == 1


def test_waiters_share_the_owners_failure_instead_of_calling_again(ai_app, fake_openai):
    fake_openai.set_mode(mode="error500")
    app = ai_app(AI_RETRIES=1, AI_PER_USER=100)
    inputs = synthetic_inputs("failing")
    with app.test_request_context():
        for i in range(10):
            service.request_analysis(f"fail-{i}", inputs, f"u{i}")
    finals = [wait_final(app, f"fail-{i}") for i in range(10)]
    assert {(f.state, f.fallback) for f in finals} == {("fallback", True)}
    assert {f.message for f in finals} == {
        "Our AI writer could not answer this time, so our scoring model wrote this analysis from your answers."
    }
    assert len(fake_openai.calls()["calls"]) == 1
    fake_openai.set_mode(mode="ok")


def test_a_fallback_is_kept_briefly_then_the_ai_is_asked_again(ai_app, fake_openai, redis_client):
    fake_openai.set_mode(mode="hang")
    app = ai_app(AI_DEADLINE_SECONDS=3, OPENAI_TIMEOUT=10, AI_FALLBACK_CACHE_SECONDS=1)
    with app.test_request_context():
        service.request_analysis("retry-1", synthetic_inputs("retry"), "u1")
    assert wait_final(app, "retry-1").state == "fallback"
    assert 0 < redis_client.ttl("ai:job:retry-1") <= 1  # not AI_CACHE_SECONDS (an hour)
    fake_openai.set_mode(mode="ok")
    gevent.sleep(1.5)
    with app.test_request_context():
        again = service.request_analysis("retry-1", synthetic_inputs("retry"), "u1")
    assert again.state == "queued"
    final = wait_final(app, "retry-1")
    assert final.state == "done" and not final.fallback and final.text.startswith("Fake AI analysis")
    assert redis_client.ttl("ai:job:retry-1") > 60


def test_a_stale_local_entry_never_finishes_a_newer_job_for_the_same_subject(ai_app, fake_openai):
    """A fallback expires after seconds and the next visit queues the subject again; a worker may
    still hold the old job in its local queue, past its deadline: that entry must not end the new job."""
    from quizapp.ai.queue import QueuedJob

    fake_openai.set_mode(latency=1.0)
    app = ai_app(AI_DISPATCHERS=1)
    with app.test_request_context():
        service.request_analysis("again-1", synthetic_inputs("again"), "u1")
        rt = get_runtime()
        stale = QueuedJob(
            priority=1,
            seq=0,
            subject_id="again-1",
            inputs=synthetic_inputs("again"),
            fingerprint="fp",
            deadline=time.time() - 5,
        )
        rt.queue.run_job(stale)
        assert service.analysis_status("again-1").pending
    final = wait_final(app, "again-1")
    assert final.state == "done" and not final.fallback


def test_jobs_within_one_millisecond_keep_their_order_of_arrival(redis_client, monkeypatch):
    """A tie in the queue's score used to be ordered by subject id: a payer who came second within
    the same millisecond went first (and test_paid_jobs_jump_the_queue failed now and then)."""
    from quizapp.ai import store as ai_store

    jobs = ai_store.JobStore(redis_client, ttl_seconds=60, secret="s")
    subjects = ("zz-free", "zz-paid", "aa-free", "aa-paid")
    redis_client.delete(ai_store.QUEUE_KEY, *(ai_store.job_key(s) for s in subjects))
    monkeypatch.setattr(ai_store.time, "time", lambda: 1_800_000_000.0)  # every arrival: one ms
    common = {"inputs": {}, "fingerprint": "f", "queue_max": 100, "per_user": 100, "deadline_s": 30}
    for subject, paid in (("zz-free", False), ("zz-paid", True), ("aa-free", False), ("aa-paid", True)):
        assert jobs.enqueue(subject, user_key=subject, paid=paid, **common)[0] == "queued"
    order = [s.decode() for s in redis_client.zrange(ai_store.QUEUE_KEY, 0, -1)]
    assert order == ["zz-paid", "aa-paid", "zz-free", "aa-free"]
    # Promoted (Redis's clock, here earlier than the payers' scores): behind every earlier payer.
    assert jobs.promote("aa-free")
    order = [s.decode() for s in redis_client.zrange(ai_store.QUEUE_KEY, 0, -1)]
    assert order == ["zz-paid", "aa-paid", "aa-free", "zz-free"]
    redis_client.delete(ai_store.QUEUE_KEY, *(ai_store.job_key(s) for s in subjects))
