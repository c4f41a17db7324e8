"""Per-worker request counters and the Prometheus exposition aggregated from every worker's heartbeat."""

from __future__ import annotations

import bisect
import time
from collections import Counter

from flask import Flask, current_app, g, request
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import generate_latest

# Upper bounds (seconds) of the HTTP latency histogram; +Inf is implicit.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerCounters:
    """Request figures of one worker process (one greenlet loop: no locking needed)."""

    def __init__(self):
        self.by_status: Counter[str] = Counter()
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, +Inf last
        self.duration_sum = 0.0
        self.reset_errors()

    def reset_errors(self) -> None:
        """Start a new error window (an admin action); Prometheus counters stay monotonic."""
        self.window = {"requests": 0, "4xx": 0, "5xx": 0, "since": time.time()}

    def observe(self, status: int, seconds: float, verdict: bool = False) -> None:
        """One response. `verdict`: a health report's own answer, whose 503 says "the cluster is
        unhealthy" rather than "this request failed", or the waiting room's: counted by status,
        not as a 5xx."""
        self.by_status[str(status)] += 1
        self.duration_sum += seconds
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)  # the first bound >= seconds; past all: +Inf
        self.bucket_counts[index] += 1
        self.window["requests"] += 1
        if 400 <= status < 500:
            self.window["4xx"] += 1
        elif status >= 500 and not verdict:
            self.window["5xx"] += 1

    def snapshot(self) -> dict:
        return {
            "by_status": dict(self.by_status),
            "latency_buckets": list(self.bucket_counts),
            "latency_sum": round(self.duration_sum, 6),
            "errors": dict(self.window),
        }


def worker_counters(app: Flask | None = None) -> WorkerCounters:
    app = app or current_app
    return app.extensions["worker_metrics"]


def init_app(app: Flask) -> None:
    """Per-worker counters; the pipeline's count_response step feeds them."""
    app.extensions["worker_metrics"] = WorkerCounters()


# Endpoints whose 503 is a verdict on the cluster, not a failure to answer. Counted as 5xx, each
# monitoring poll of an unhealthy cluster raised the error rate, and the error-rate alert then
# kept the cluster unhealthy on its own (one warning fed itself through every poll).
HEALTH_VERDICTS = frozenset({"health.detailed", "health.readyz"})
# The waiting room's 503s (X-Admission: wait / busy) are the answer admission control gives by
# design when the cluster is full. Counted as 5xx, shedding load raised a false "5xx errors"
# warning on the health page (4.5 % of responses in a bench at 2x-4x the capacity), beside the
# admission_shedding_load check that reports it for what it is.
WAITING_ROOM_ANSWERS = ("wait", "busy")


def count_response(response):
    """After step: count the response by status and by the request's one timer (edge.start_request)."""
    started = g._get_current_object().get("request_started")
    elapsed = time.perf_counter() - started if started is not None else 0.0
    status = response.status_code
    # Only a 5xx needs telling apart (a header lookup on every page view costs the hot path).
    verdict = status >= 500 and (
        request.endpoint in HEALTH_VERDICTS or response.headers.get("X-Admission") in WAITING_ROOM_ANSWERS
    )
    current_app.extensions["worker_metrics"].observe(status, elapsed, verdict)
    return response


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


AI_WAIT_BUCKETS_MS = (500, 1000, 2000, 5000, 10000, 20000, 30000, 60000, 120000)  # as in ai/store.py


def _cumulative(bounds, counts) -> list[tuple[str, float]]:
    buckets, running = [], 0
    for le, count in zip([*map(str, bounds), "+Inf"], counts, strict=True):
        running += count
        buckets.append((le, running))
    return buckets


# Pool figures summed over workers: (family, name, help, the pool stats field).
_POOL_SUMS = (
    (GaugeMetricFamily, "quizapp_db_pool_max_connections", "Configured pool size summed over workers", "max"),
    (GaugeMetricFamily, "quizapp_db_pool_waiting", "Requests waiting for a Postgres connection", "waiting"),
    (
        CounterMetricFamily,
        "quizapp_db_pool_timeouts",
        "Requests that waited DB_POOL_TIMEOUT and got a 503",
        "timeouts",
    ),
    (
        CounterMetricFamily,
        "quizapp_db_pool_wait_seconds",
        "Time spent waiting for a Postgres connection",
        "wait_seconds",
    ),
)


class ClusterCollector:
    """Per-worker figures summed over the live heartbeats; cluster-wide figures (read once from
    Redis: the AI service, Redis memory and replicas, the health report) exported once, never per worker."""

    def __init__(self, workers: list[dict], cluster: dict | None = None):
        self.workers = workers
        self.cluster = cluster or {}

    def collect(self):
        workers = self.workers
        yield GaugeMetricFamily(
            "quizapp_workers",
            "Live worker processes reporting heartbeats",
            value=len(workers),
        )
        yield from self._http(workers)
        yield from self._pool(workers)
        yield from self._ai_workers(workers)
        yield from self._ai_cluster(self.cluster.get("ai"))
        yield from self._health(self.cluster.get("health"))
        yield from self._redis_replicas(self.cluster)
        limiter = GaugeMetricFamily(
            "quizapp_limiter_fallback_workers",
            "Workers whose rate limiter runs on the in-memory fallback instead of Redis",
        )
        limiter.add_metric([], sum(1 for w in workers if (w.get("limiter") or {}).get("fallback")))
        yield limiter
        yield GaugeMetricFamily(
            "quizapp_resident_memory_bytes",
            "Resident memory summed over workers",
            value=sum(w.get("rss_bytes", 0) for w in workers),
        )

    def _http(self, workers):
        requests_total = CounterMetricFamily(
            "quizapp_http_requests", "HTTP responses by status code", labels=["status"]
        )
        by_status: Counter[str] = Counter()
        for worker in workers:
            by_status.update(worker["http"]["by_status"])
        for status, count in sorted(by_status.items()):
            requests_total.add_metric([status], count)
        yield requests_total

        counts = [0] * (len(LATENCY_BUCKETS) + 1)
        total_sum = 0.0
        for worker in workers:
            for i, count in enumerate(worker["http"]["latency_buckets"]):
                counts[i] += count
            total_sum += worker["http"]["latency_sum"]
        yield HistogramMetricFamily(
            "quizapp_http_request_duration_seconds",
            "Time from the first hook to the response, per request (page latency)",
            buckets=_cumulative(LATENCY_BUCKETS, counts),
            sum_value=total_sum,
        )

    def _pool(self, workers):
        pools = [w["pool"] for w in workers if w.get("pool")]
        connections = GaugeMetricFamily(
            "quizapp_db_pool_connections",
            "Postgres connections by state",
            labels=["state"],
        )
        connections.add_metric(["in_use"], sum(p["in_use"] for p in pools))
        connections.add_metric(["idle"], sum(p["idle"] for p in pools))
        yield connections
        for family, name, help_text, figure in _POOL_SUMS:
            yield family(name, help_text, value=sum(p[figure] for p in pools))

    def _ai_workers(self, workers):
        breaker = GaugeMetricFamily(
            "quizapp_ai_breaker_workers",
            "Workers by the AI circuit breaker state they last saw",
            labels=["state"],
        )
        states = Counter(str(w.get("breaker", "CLOSED")).upper() for w in workers)
        for state in ("CLOSED", "HALF_OPEN", "OPEN"):
            breaker.add_metric([state], states.get(state, 0))
        yield breaker

    def _ai_cluster(self, ai):
        """The AI service's own figures live in Redis, shared by every worker: exported once."""
        if not ai:
            return
        yield GaugeMetricFamily(
            "quizapp_ai_enabled", "1 when an AI provider is configured", value=ai["enabled"]
        )
        yield GaugeMetricFamily(
            "quizapp_ai_queue_length",
            "Analyses waiting in the cluster-wide AI queue",
            value=_number(ai.get("queue_length")) or 0,
        )
        yield GaugeMetricFamily(
            "quizapp_ai_breaker_open",
            "1 while the cluster-wide AI circuit breaker is open",
            value=1 if str(ai.get("breaker_state", "")).upper() == "OPEN" else 0,
        )
        for name, help_text in (
            ("window_used", "AI calls started in the current budget window"),
            ("window_limit", "AI calls allowed per budget window (AI_RPM)"),
            ("in_flight", "AI calls in flight"),
            ("in_flight_limit", "AI calls allowed in flight at once (AI_MAX_IN_FLIGHT)"),
        ):
            if _number(ai.get(name)) is not None:
                yield GaugeMetricFamily(f"quizapp_ai_budget_{name}", help_text, value=ai[name])
        counters = ai.get("counters") or {}
        events = CounterMetricFamily(
            "quizapp_ai_events", "AI service events (calls, retries, fallbacks, ...)", labels=["event"]
        )
        for name, value in sorted(counters.items()):
            if not name.startswith("wait_"):
                events.add_metric([name], value)
        yield events
        counts = [counters.get(f"wait_bucket:{le}", 0) for le in AI_WAIT_BUCKETS_MS]
        counts.append(counters.get("wait_bucket:inf", 0))
        yield HistogramMetricFamily(
            "quizapp_ai_wait_seconds",
            "Time from queueing an analysis to its outcome (AI text or fallback)",
            buckets=_cumulative([ms / 1000 for ms in AI_WAIT_BUCKETS_MS], counts),
            sum_value=counters.get("wait_sum_ms", 0) / 1000,
        )

    def _health(self, report):
        if not report:
            return
        yield GaugeMetricFamily("quizapp_health_score", "Cluster health score 0-100", value=report["score"])
        alerts = GaugeMetricFamily(
            "quizapp_health_alerts", "Health findings holding now, by severity", labels=["severity"]
        )
        severities = Counter(a["severity"] for a in report.get("alert_details", []))
        for severity in ("critical", "warning", "info"):
            alerts.add_metric([severity], severities.get(severity, 0))
        yield alerts
        memory = (report.get("cluster") or {}).get("redis_memory")
        if memory:
            yield GaugeMetricFamily(
                "quizapp_redis_memory_used_bytes", "Redis used_memory", value=memory["used"]
            )
            yield GaugeMetricFamily(
                "quizapp_redis_memory_max_bytes", "Redis maxmemory (0: unbounded)", value=memory["max"]
            )

    def _redis_replicas(self, cluster):
        """Replicas online (INFO replication, sampled with the health report), how far the furthest
        behind lags, and how many WAIT wants."""
        replication = ((cluster.get("health") or {}).get("cluster") or {}).get("redis_replication")
        if replication:
            yield GaugeMetricFamily(
                "quizapp_redis_connected_replicas",
                "Replicas online on the Redis primary (INFO replication)",
                value=replication["connected"],
            )
        if replication and "lag_bytes" in replication:  # only with replicas online
            yield GaugeMetricFamily(
                "quizapp_redis_replica_lag_bytes",
                "Replication stream bytes the furthest-behind online replica has not acknowledged",
                value=replication["lag_bytes"],
            )
            yield GaugeMetricFamily(
                "quizapp_redis_replica_lag_seconds",
                "Seconds since the furthest-behind online replica last acknowledged (it acks every second)",
                value=replication["lag_seconds"],
            )
        if "redis_wait_replicas" in cluster:
            yield GaugeMetricFamily(
                "quizapp_redis_replicas_wanted",
                "Replicas a durable write waits for (REDIS_WAIT_REPLICAS; 0: none)",
                value=cluster["redis_wait_replicas"],
            )


def render_prometheus(workers: list[dict], cluster: dict | None = None) -> bytes:
    """The Prometheus text exposition of the whole cluster."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(workers, cluster))
    return generate_latest(registry)
