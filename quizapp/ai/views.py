"""The JSON poll endpoint the results page uses to fill in the AI analysis."""

from flask import Blueprint, jsonify

from ..errors import NotFound
from . import messages, service

bp = Blueprint("ai", __name__)


@bp.get("/api/analysis/<public_id:subject_id>")
def analysis_json(subject_id: str):
    status = service.analysis_status(subject_id)
    if status is None:
        raise NotFound(messages.NO_ANALYSIS_MESSAGE)
    response = jsonify(status.as_dict())
    response.headers["Cache-Control"] = "no-store"
    return response
