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
