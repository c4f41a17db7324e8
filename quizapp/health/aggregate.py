"""The cluster-wide health view: live workers' heartbeats scored 0-100, with alerts and advice."""

from __future__ import annotations

import json
import logging
import time

import gevent
from flask import current_app

from .. import metrics, redis_conn
from ..ai import service as ai_service
from . import alerts, heartbeat, service
from . import checks as builtin_checks  # noqa: F401 - importing registers the built-in checks

log = logging.getLogger(__name__)

ALERT_BELOW = 70
CACHE_KEY = "health:detailed:cache"
CACHE_LOCK_KEY = "health:detailed:lock"
CACHE_MS = 1000


def score_cluster(
    workers: list[dict],
    checks: dict,
    queue_max: int,
    cluster: dict | None = None,
    app=None,
) -> dict:
    """Score 0-100 from every registered check (quizapp/health/checks.py and plug-ins).

    Pure unless `app` is given (then checks may probe Redis, Postgres...). The status is healthy
    only while no warning or critical alert holds and the score is at least ALERT_BELOW."""
    ctx = alerts.HealthContext(
        workers=workers,
        checks=checks,
        config={"AI_QUEUE_MAX": queue_max, **(app.config if app is not None else {})},
        cluster=dict(cluster or {}),
        app=app,
    )
    found = alerts.evaluate(ctx)
    score = max(0, 100 - sum(a.penalty for a in found))
    alerting = [a for a in found if a.alertable]
    if score >= ALERT_BELOW and not alerting:
        status = "healthy"
    else:
        status = "degraded" if score >= 40 else "unhealthy"
    return {
        "score": score,
        "status": status,
        "alerts": [a.message for a in alerting]
        or ([a.message for a in found] if score < ALERT_BELOW else []),
        "alert_details": [a.as_dict() for a in found],
        "findings": [a.message for a in found],
        "recommendations": [a.recommendation for a in found],
        "cluster": ctx.cluster,
    }


def _instances(workers: list[dict]) -> dict:
    by_instance: dict[str, dict] = {}
    for worker in workers:
        entry = by_instance.setdefault(worker["instance"], {"workers": 0, "requests": 0})
        entry["workers"] += 1
        entry["requests"] += sum(worker["http"]["by_status"].values())
    return by_instance


def build_report() -> dict:
    """Read every live worker's heartbeat and score the cluster (no cache)."""
    app = current_app
    workers = heartbeat.live_workers(redis_conn.redis_client(app), app.config["HEARTBEAT_SECONDS"])
    _, checks = service.readiness()
    report = score_cluster(workers, checks, app.config["AI_QUEUE_MAX"], app=app._get_current_object())
    report.update(
        generated_at=time.time(),
        checks=checks,
        instances=_instances(workers),
        workers=workers,
        actions=heartbeat.action_generations(redis_conn.redis_client(app)),
    )
    return report


def detailed_health(fresh: bool = False) -> dict:
    """The report, computed at most about once a second for the whole cluster (Redis cache).

    `fresh`: build it now (and cache it), e.g. to show an admin action just applied."""
    client = redis_conn.redis_client()
    if not fresh:
        cached = client.get(CACHE_KEY)
        if cached is None and not client.set(CACHE_LOCK_KEY, b"1", nx=True, px=2 * CACHE_MS):
            # Another worker is computing it: wait briefly for its result rather than piling on.
            for _ in range(20):
                gevent.sleep(0.05)
                cached = client.get(CACHE_KEY)
                if cached is not None:
                    break
        if cached is not None:
            return json.loads(cached)
    report = build_report()
    client.set(CACHE_KEY, json.dumps(report), px=CACHE_MS)
    client.delete(CACHE_LOCK_KEY)
    return report


def prometheus_text() -> bytes:
    """Per-worker figures from the heartbeats; cluster-wide ones read once here."""
    app = current_app
    workers = heartbeat.live_workers(redis_conn.redis_client(app), app.config["HEARTBEAT_SECONDS"])
    cluster = {
        "ai": ai_service.metrics_snapshot(),
        "health": detailed_health(),
        "redis_wait_replicas": redis_conn.replicas_wanted(app.config)[0],
    }
    return metrics.render_prometheus(workers, cluster)
