"""Liveness and readiness against real and missing dependencies."""

from devstack.processes import free_port


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"postgres": "ok", "redis": "ok"}


def test_readyz_reports_redis_down(make_app):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT=0.3)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"] != "ok"


def test_readyz_reports_postgres_down(make_app):
    app = make_app(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", DB_POOL_MIN=0)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["postgres"] != "ok"


def test_unknown_page_is_a_404_page(client):
    response = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert b"could not find" in response.data


def test_an_unhealthy_verdict_is_not_counted_as_a_server_error(make_app, monkeypatch):
    """/readyz's and /api/health/detailed's 503 report on the cluster: counted as 5xx, every poll
    of a failing cluster would raise the error rate, and the error-rate alert would keep it failing."""
    from quizapp.health import aggregate
    from quizapp.metrics import worker_counters

    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT=0.3)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/readyz").status_code == 503
    counters = worker_counters(app)
    assert counters.window["requests"] == 3 and counters.window["5xx"] == 0
    assert counters.by_status["503"] == 3  # still counted by status (Prometheus)

    monkeypatch.setattr(aggregate, "detailed_health", lambda: {"status": "degraded", "workers": []})
    polled = make_app()
    for _ in range(3):
        assert polled.test_client().get("/api/health/detailed").status_code == 503
    counters = worker_counters(polled)
    assert counters.window["requests"] == 3 and counters.window["5xx"] == 0
    counters.observe(503, 0.01)  # any other 503 is a server error
    assert counters.window["5xx"] == 1


def test_the_waiting_rooms_answers_are_not_counted_as_server_errors(make_app):
    """Shedding load is admission control doing its job: a full cluster's waiting-room 503s must not
    raise the health page's 5xx alert (admission_shedding_load reports them for what they are)."""
    from quizapp.health import checks
    from quizapp.health.checks import HealthContext
    from quizapp.metrics import worker_counters

    app = make_app(ADMISSION_CAPACITY=1, ADMISSION_PACE_PER_SECOND="off", RATELIMIT_ENABLED="false")
    assert app.test_client().get("/").status_code == 200  # the one slot
    waiting = [app.test_client().get("/", headers={"Accept": "application/json"}) for _ in range(30)]
    assert {(r.status_code, r.headers["X-Admission"]) for r in waiting} == {(503, "wait")}
    counters = worker_counters(app)
    assert counters.window["requests"] == 31 and counters.window["5xx"] == 0
    assert counters.by_status["503"] == 30  # still counted by status (Prometheus)
    snapshot = {"http": {"errors": counters.window}}
    assert checks.server_errors(HealthContext(workers=[snapshot], checks={}, config={})) is None
