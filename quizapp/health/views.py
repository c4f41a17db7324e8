"""Liveness and readiness endpoints."""

from flask import Blueprint, jsonify

from . import service

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    ready, checks = service.readiness()
    return jsonify(status="ready" if ready else "unavailable", checks=checks), (200 if ready else 503)
