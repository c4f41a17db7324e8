"""/metrics: Prometheus text aggregated over every worker's heartbeat, promtool-clean."""

import subprocess

from prometheus_client.parser import text_string_to_metric_families

from quizapp.health import heartbeat


def _samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_sum_requests_over_workers(make_app):
    first, second = make_app(INSTANCE_NAME="one"), make_app(INSTANCE_NAME="two")
    for app, misses in ((first, 2), (second, 3)):
        client = app.test_client()
        client.get("/healthz")
        for _ in range(misses):
            client.get("/no/such/page")
        with app.app_context():
            heartbeat.publish(app)
    response = first.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = _samples(response.get_data(as_text=True))
    assert samples[("quizapp_workers", ())] == 2
    assert samples[("quizapp_http_requests_total", (("status", "200"),))] == 2
    assert samples[("quizapp_http_requests_total", (("status", "404"),))] == 5
    assert samples[("quizapp_http_request_duration_seconds_count", ())] == 7
    assert samples[("quizapp_db_pool_max_connections", ())] == 2 * first.config["DB_POOL_MAX"]
    assert samples[("quizapp_ai_breaker_workers", (("state", "CLOSED"),))] == 2
    assert samples[("quizapp_limiter_fallback_workers", ())] == 0


def test_promtool_accepts_the_exposition(app, client):
    client.get("/healthz")
    with app.app_context():
        heartbeat.publish(app)
    text = client.get("/metrics").get_data()
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b""


def test_latency_lands_in_the_first_bucket_whose_bound_it_does_not_exceed():
    from quizapp.metrics import LATENCY_BUCKETS, WorkerCounters

    counters = WorkerCounters()
    for seconds in (0.0, 0.005, 0.0051, 10.0, 10.5):
        counters.observe(200, seconds)
    buckets = counters.snapshot()["latency_buckets"]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert (buckets[0], buckets[1], buckets[-2], buckets[-1]) == (2, 1, 1, 1)  # +Inf last
