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


PAGE = """{% extends "base.html" %}
{% block head %}{% include "ai/_analysis_head.html" %}{% endblock %}
{% block content %}{% include "ai/_analysis.html" %}{% endblock %}"""


@app.get("/_test/ai/page/<subject_id>")
def ai_results_page(subject_id):
    """A stand-in results page: the AI section as the quiz's results page includes it."""
    from flask import render_template_string

    analysis = service.analysis_status(subject_id)
    return render_template_string(PAGE, analysis=analysis, subject_id=subject_id)
