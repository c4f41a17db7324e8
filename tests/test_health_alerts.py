"""Health tells the truth: the alert registry, its built-in checks, and 503 while an alert holds."""

import time

from quizapp.health import aggregate, alerts, heartbeat
from tests.test_health_cluster import OK, _worker


def _score(workers, **cluster):
    return aggregate.score_cluster(workers, OK, queue_max=500, cluster=cluster)


def test_ai_breaker_open_on_every_worker_is_a_critical_alert():
    report = _score([_worker(breaker="OPEN"), _worker(worker="b:2", breaker="OPEN")])
    assert (report["score"], report["status"]) == (60, "degraded")
    (detail,) = report["alert_details"]
    assert (detail["name"], detail["severity"], detail["penalty"]) == ("ai_breaker_open", "critical", 40)
    assert "force-close the breakers" in detail["recommendation"]
    assert report["alerts"] == [detail["message"]]


def test_breaker_open_on_some_workers_is_only_a_finding():
    report = _score([_worker(breaker="OPEN"), _worker(worker="b:2")])
    assert (report["score"], report["status"], report["alerts"]) == (90, "healthy", [])


def test_limiter_fallback_alerts_even_at_a_high_score():
    report = _score([_worker(limiter={"fallback": True}), _worker(worker="b:2")])
    assert report["score"] == 80 and report["status"] == "degraded"
    assert report["alerts"] == ["rate limiter on its in-memory fallback on 1 of 2 workers"]


def test_redis_memory_thresholds():
    mib = 2**20
    quiet = _score([_worker()], redis_memory={"used": 200 * mib, "max": 256 * mib, "policy": "volatile-lru"})
    near = _score([_worker()], redis_memory={"used": 235 * mib, "max": 256 * mib, "policy": "volatile-lru"})
    full = _score([_worker()], redis_memory={"used": 255 * mib, "max": 256 * mib, "policy": "volatile-lru"})
    unbounded = _score([_worker()], redis_memory={"used": 5 * mib, "max": 0, "policy": "noeviction"})
    assert (quiet["score"], quiet["status"]) == (100, "healthy")
    assert (near["score"], near["status"], near["alert_details"][0]["severity"]) == (
        80,
        "degraded",
        "warning",
    )
    assert (full["score"], full["alert_details"][0]["severity"]) == (60, "critical")
    assert "Redis memory at 100% of maxmemory" in full["alerts"][0]
    assert (unbounded["score"], unbounded["status"]) == (100, "healthy")
    assert "maxmemory-policy volatile-lru" in unbounded["recommendations"][0]


def test_a_plugged_in_check_scores_and_alerts_and_a_broken_one_is_named():
    def mail_backlog(ctx):
        pending = ctx.probe("mail_backlog", lambda: {"pending": 900})
        if pending and pending["pending"] >= 500:
            return alerts.Alert("mail_backlog", alerts.WARNING, "900 mails waiting", "check the mailer", 20)
        return None

    def broken(ctx):
        raise RuntimeError("boom")

    ctx = alerts.HealthContext(
        workers=[_worker()], checks=OK, config={}, cluster={"mail_backlog": {"pending": 900}}
    )
    found = alerts.evaluate(ctx, checks=[*alerts.registered_checks(), mail_backlog, broken])
    assert [(a.name, a.severity) for a in found] == [("mail_backlog", "warning"), ("broken", "warning")]


def test_live_report_is_503_with_the_breaker_open_everywhere(make_app, redis_client):
    ai = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "AI_BREAKER_COOLDOWN": 600}
    apps = [make_app(INSTANCE_NAME="one", **ai), make_app(INSTANCE_NAME="two", **ai)]
    client = apps[0].test_client()
    for app in apps:
        with app.app_context():
            heartbeat.publish(app)
    assert client.get("/api/health/detailed").status_code == 200
    redis_client.hset("ai:breaker", mapping={"state": "OPEN", "opened_at": int(time.time() * 1000)})
    for app in apps:
        with app.app_context():
            heartbeat.publish(app)
    redis_client.delete(aggregate.CACHE_KEY)
    response = client.get("/api/health/detailed")
    body = response.get_json()
    assert response.status_code == 503, body
    assert body["alerts"] == ["AI circuit breaker open on every worker (2): no AI analysis is being made"]
    assert body["alert_details"][0]["name"] == "ai_breaker_open"


def test_live_report_reads_redis_memory(make_app):
    app = make_app()
    with app.app_context():
        heartbeat.publish(app)
        report = aggregate.build_report()
    assert report["score"] == 100, report["findings"]
    assert report["status"] == "healthy"
    memory = report["cluster"]["redis_memory"]
    assert memory["used"] > 0 and memory["max"] >= memory["used"]
    assert memory["policy"] == "volatile-lru"  # scripts/services.sh


def test_mail_backlog_dead_letters_and_payment_problems_alert():
    report = _score(
        [_worker()],
        mail={"backlog": 3, "pending": 5, "dead": 2},
        payments={"mismatches_24h": 1, "refunds_pending": 0},
    )
    names = [(a["name"], a["severity"], a["penalty"]) for a in report["alert_details"]]
    assert names == [
        ("mail_backlog", "warning", 20),
        ("payment_mismatch", "warning", 20),
        ("mail_dead_letters", "warning", 10),
    ]
    assert (report["score"], report["status"]) == (50, "degraded")
    quiet = _score([_worker()], mail={"backlog": 0, "pending": 4, "dead": 0}, payments={})
    assert (quiet["score"], quiet["status"]) == (100, "healthy")
