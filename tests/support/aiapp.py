"""The real app plus test-only routes to request AI analyses for synthetic inputs (AI tests only)."""

import os

from flask import jsonify, request

import wsgi
from quizapp.ai import service
from quizapp.extensions import csrf

app = wsgi.app


@app.post("/_test/ai/request")
@csrf.exempt
def request_ai_analysis():
    body = request.get_json()
    status = service.request_analysis(
        body["subject_id"],
        body["inputs"],
        body["user_key"],
        paid=bool(body.get("paid")),
    )
    return jsonify({**status.as_dict(), "pid": os.getpid()})


@app.get("/_test/ai/metrics")
def ai_metrics():
    return jsonify(service.metrics_snapshot())


@app.post("/_test/ai/reset-queue")
@csrf.exempt
def ai_reset_queue():
    return jsonify({"reset": service.reset_queue()})


@app.post("/_test/ai/close-breaker")
@csrf.exempt
def ai_close_breaker():
    service.force_close_breaker()
    return jsonify({"closed": True})
