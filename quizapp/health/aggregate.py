"""The cluster-wide health view: live workers' heartbeats scored 0-100, with alerts and advice."""

from __future__ import annotations

import json
import logging
import time

import gevent
from flask import current_app

from .. import metrics
from . import heartbeat, service

log = logging.getLogger(__name__)

ALERT_BELOW = 70
CACHE_KEY = "health:detailed:cache"
CACHE_LOCK_KEY = "health:detailed:lock"
CACHE_MS = 1000
POOL_SATURATED_AT = 0.9
RSS_HIGH_BYTES = 768 * 1024 * 1024


def _finding(penalty: int, problem: str, recommendation: str) -> dict:
    return {"penalty": penalty, "problem": problem, "recommendation": recommendation}


def _pool_findings(workers: list[dict]) -> list[dict]:
    saturated = [
        w["worker"]
        for w in workers
        if w.get("pool")
        and (w["pool"]["waiting"] > 0 or w["pool"]["in_use"] >= POOL_SATURATED_AT * w["pool"]["max"])
    ]
    if not saturated:
        return []
    return [
        _finding(
            30 if len(saturated) * 2 >= len(workers) else 15,
            f"pool saturated on {len(saturated)} of {len(workers)} workers",
            "pool saturated: raise DB_POOL_MAX or add PgBouncer",
        )
    ]


def _error_findings(workers: list[dict]) -> list[dict]:
    requests = sum(w["http"]["errors"]["requests"] for w in workers)
    server_errors = sum(w["http"]["errors"]["5xx"] for w in workers)
    if requests < 20 or server_errors == 0:
        return []
    ratio = server_errors / requests
    if ratio >= 0.05:
        penalty = 40
    elif ratio >= 0.01:
        penalty = 15
    else:
        return []
    return [
        _finding(
            penalty,
            f"{server_errors} of {requests} responses were 5xx ({ratio:.1%})",
            "5xx errors: read the error log by request id; reset the counters once fixed",
        )
    ]


def _ai_findings(workers: list[dict], queue_max: int) -> list[dict]:
    findings = []
    open_workers = [w for w in workers if w.get("breaker") == "OPEN"]
    if open_workers:
        findings.append(
            _finding(
                25,
                f"AI circuit breaker open on {len(open_workers)} workers",
                "AI breaker open: the upstream API is failing, results get the algorithmic "
                "analysis; check the AI provider, then force-close the breakers",
            )
        )
    queue = max((w.get("ai", {}).get("queue_length") or 0 for w in workers), default=0)
    if queue >= 0.8 * queue_max:
        findings.append(
            _finding(
                20,
                f"AI queue at {queue} of {queue_max}",
                "AI queue near full: raise AI_RPM if the provider allows it, or reset the queue",
            )
        )
    return findings


def _process_findings(workers: list[dict]) -> list[dict]:
    findings = []
    fallback = [w for w in workers if w.get("limiter", {}).get("fallback")]
    if fallback:
        findings.append(
            _finding(
                20,
                f"rate limiter on in-memory fallback on {len(fallback)} workers",
                "limiter fallback: Redis is unreachable for the limiter; limits are per worker",
            )
        )
    heavy = [w for w in workers if w.get("rss_bytes", 0) >= RSS_HIGH_BYTES]
    if heavy:
        findings.append(
            _finding(
                10,
                f"{len(heavy)} workers above {RSS_HIGH_BYTES // 2**20} MiB resident",
                "memory high: lower GUNICORN_MAX_REQUESTS so workers recycle sooner",
            )
        )
    return findings


def score_cluster(workers: list[dict], checks: dict, queue_max: int) -> dict:
    """Score 0-100 from the heartbeats and dependency checks; pure, no I/O."""
    findings = []
    if not workers:
        findings.append(_finding(100, "no worker heartbeats", "no live workers: start the instances"))
    for name, result in sorted(checks.items()):
        if result != "ok":
            findings.append(_finding(60, f"{name} check failed: {result}", f"{name} down: restore {name}"))
    if workers:
        findings += _pool_findings(workers)
        findings += _error_findings(workers)
        findings += _ai_findings(workers, queue_max)
        findings += _process_findings(workers)
    score = max(0, 100 - sum(f["penalty"] for f in findings))
    status = "healthy" if score >= ALERT_BELOW else ("degraded" if score >= 40 else "unhealthy")
    return {
        "score": score,
        "status": status,
        "alerts": [f["problem"] for f in findings] if score < ALERT_BELOW else [],
        "findings": [f["problem"] for f in findings],
        "recommendations": [f["recommendation"] for f in findings],
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
    workers = heartbeat.live_workers(app.extensions["redis"], app.config["HEARTBEAT_SECONDS"])
    _, checks = service.readiness()
    report = score_cluster(workers, checks, app.config["AI_QUEUE_MAX"])
    report.update(
        generated_at=time.time(),
        checks=checks,
        instances=_instances(workers),
        workers=workers,
        actions=heartbeat.action_generations(app.extensions["redis"]),
    )
    return report


def detailed_health() -> dict:
    """The report, computed at most about once a second for the whole cluster (Redis cache)."""
    client = current_app.extensions["redis"]
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


def forget_cached_report() -> None:
    current_app.extensions["redis"].delete(CACHE_KEY)


def prometheus_text() -> bytes:
    app = current_app
    workers = heartbeat.live_workers(app.extensions["redis"], app.config["HEARTBEAT_SECONDS"])
    return metrics.render_prometheus(workers)
