"""The cluster health report: heartbeats in Redis, score, alerts, the 1 s cache, 200/503."""

import time

import gevent

from quizapp.health import aggregate, heartbeat


def _worker(**changes):
    figures = {
        "worker": "a:1",
        "instance": "a",
        "pid": 1,
        "pool": {
            "in_use": 1,
            "idle": 1,
            "waiting": 0,
            "max": 20,
            "timeouts": 0,
            "wait_seconds": 0.0,
        },
        "ai": {"queue_length": 0, "breaker_state": "CLOSED"},
        "breaker": "CLOSED",
        "http": {
            "by_status": {"200": 10},
            "latency_buckets": [10] + [0] * 11,
            "latency_sum": 0.01,
            "errors": {"requests": 100, "4xx": 0, "5xx": 0, "since": 0},
        },
        "limiter": {"storage": "redis", "fallback": False},
        "rss_bytes": 50 * 2**20,
    }
    for key, value in changes.items():
        figures[key] = {**figures[key], **value} if isinstance(value, dict) else value
    return figures


OK = {"postgres": "ok", "redis": "ok"}


def test_a_quiet_cluster_scores_100():
    report = aggregate.score_cluster([_worker(), _worker(worker="b:2")], OK, queue_max=500)
    assert (report["score"], report["status"], report["alerts"]) == (100, "healthy", [])


def test_saturated_pool_is_alerted_with_advice():
    busy = _worker(pool={"in_use": 20, "waiting": 7})
    report = aggregate.score_cluster([busy], OK, queue_max=500)
    assert report["score"] == 70
    assert "pool saturated: raise DB_POOL_MAX or add PgBouncer" in report["recommendations"]


def test_errors_breaker_and_fallback_add_up_to_an_unhealthy_cluster():
    sick = _worker(
        breaker="OPEN",
        limiter={"fallback": True},
        http={"errors": {"requests": 100, "4xx": 3, "5xx": 10, "since": 0}},
    )
    report = aggregate.score_cluster([sick], OK, queue_max=500)
    assert report["score"] == max(0, 100 - 40 - 40 - 20)  # 5xx, breaker open everywhere, limiter
    assert report["status"] == "unhealthy"
    assert len(report["alerts"]) == 3


def test_no_workers_or_a_failed_dependency_is_unhealthy():
    assert aggregate.score_cluster([], OK, queue_max=500)["score"] == 0
    down = aggregate.score_cluster([_worker()], {**OK, "postgres": "timeout"}, queue_max=500)
    assert down["score"] == 40 and down["alerts"] == ["postgres check failed: timeout"]


def test_detailed_endpoint_aggregates_published_workers(app, client):
    with app.app_context():
        heartbeat.publish(app)
    client.get("/healthz")
    response = client.get("/api/health/detailed")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "healthy" and body["score"] == 100
    assert [w["worker"] for w in body["workers"]] == [heartbeat.heartbeat_state(app).worker_id]
    assert body["workers"][0]["pool"]["max"] == app.config["DB_POOL_MAX"]
    assert body["workers"][0]["rss_bytes"] > 0


def test_detailed_is_503_without_live_workers(client):
    response = client.get("/api/health/detailed")
    assert response.status_code == 503
    assert response.get_json()["alerts"] == ["no worker heartbeats"]


def test_detailed_is_cached_for_a_second_cluster_wide(make_app):
    first, second = make_app(), make_app()
    with first.app_context():
        heartbeat.publish(first)
    a = first.test_client().get("/api/health/detailed").get_json()
    b = second.test_client().get("/api/health/detailed").get_json()
    assert a["generated_at"] == b["generated_at"]
    time.sleep(1.1)
    c = second.test_client().get("/api/health/detailed").get_json()
    assert c["generated_at"] > a["generated_at"]


def test_withdrawn_and_expired_workers_leave_the_view(make_app, redis_client):
    app = make_app(HEARTBEAT_SECONDS=0.4)
    with app.app_context():
        heartbeat.publish(app)
        assert len(heartbeat.live_workers(redis_client, 0.4)) == 1
        heartbeat.stop_heartbeat(app)
        assert heartbeat.live_workers(redis_client, 0.4) == []
        heartbeat.publish(app)
    time.sleep(1.3)  # TTL is 3 heartbeats
    assert heartbeat.live_workers(redis_client, 0.4) == []


def test_a_burst_of_requests_computes_the_report_once(make_app):
    apps = [make_app(), make_app()]
    with apps[0].app_context():
        heartbeat.publish(apps[0])
    clients = [app.test_client() for app in apps]
    jobs = [gevent.spawn(clients[i % 2].get, "/api/health/detailed") for i in range(30)]
    gevent.joinall(jobs, raise_error=True)
    stamps = {job.value.get_json()["generated_at"] for job in jobs}
    assert [job.value.status_code for job in jobs] == [200] * 30
    assert len(stamps) == 1
