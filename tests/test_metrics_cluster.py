"""/metrics exports cluster-wide figures once (not once per worker), counters as _total, histograms."""

from quizapp.ai.runtime import get_runtime, stop_runtime
from quizapp.health import heartbeat
from tests.test_metrics import _samples

AI = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "AI_RPM": 10}


def test_cluster_wide_ai_figures_are_exported_once(make_app):
    apps = [make_app(INSTANCE_NAME=f"i{n}", **AI) for n in range(2)]
    try:
        with apps[0].app_context():
            store = get_runtime(apps[0]).store
            store.count("calls", 7)
            for n, wait_ms in enumerate((300, 1500, 1500)):
                subject = f"s{n}"
                store.enqueue(
                    subject,
                    inputs={"x": n},
                    fingerprint=f"fp{n}",
                    user_key=f"user{n}",
                    paid=False,
                    queue_max=100,
                    per_user=5,
                    deadline_s=60,
                )
                store.redis.hset(f"ai:job:{subject}", "enqueued_at", _redis_ms(store.redis) - wait_ms)
                assert store.finish(subject, state="done", text="text", counter="ai_done")
        for app in apps:
            with app.app_context():
                heartbeat.publish(app)
        samples = _samples(apps[1].test_client().get("/metrics").get_data(as_text=True))
    finally:
        for app in apps:
            stop_runtime(app)
    assert samples[("quizapp_workers", ())] == 2
    assert samples[("quizapp_ai_events_total", (("event", "calls"),))] == 7
    assert samples[("quizapp_ai_events_total", (("event", "ai_done"),))] == 3
    assert samples[("quizapp_ai_budget_window_limit", ())] == 10
    assert samples[("quizapp_ai_breaker_open", ())] == 0
    assert samples[("quizapp_ai_breaker_workers", (("state", "CLOSED"),))] == 2
    assert samples[("quizapp_ai_wait_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("quizapp_ai_wait_seconds_bucket", (("le", "2.0"),))] == 3
    assert samples[("quizapp_ai_wait_seconds_count", ())] == 3
    assert 3.2 <= samples[("quizapp_ai_wait_seconds_sum", ())] <= 3.6
    assert samples[("quizapp_health_score", ())] == 100
    assert samples[("quizapp_health_alerts", (("severity", "critical"),))] == 0
    assert samples[("quizapp_redis_memory_max_bytes", ())] > 0
    assert not any(name == "quizapp_ai_figure" for name, _ in samples)


def _redis_ms(client) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000
