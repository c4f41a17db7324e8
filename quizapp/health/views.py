"""Liveness, readiness, the cluster-wide health report and the Prometheus metrics."""

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from . import aggregate, service

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    ready, checks = service.readiness()
    return jsonify(status="ready" if ready else "unavailable", checks=checks), (200 if ready else 503)


@bp.get("/api/health/detailed")
def detailed():
    report = aggregate.detailed_health()
    return jsonify(report), (200 if report["status"] == "healthy" else 503)


@bp.get("/metrics")
def prometheus_metrics():
    return Response(aggregate.prometheus_text(), content_type=CONTENT_TYPE_LATEST)
