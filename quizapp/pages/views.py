"""Privacy, terms, refund and contact pages, the favicon, and the operator details every template sees."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, render_template

from ..links import absolute_url

bp = Blueprint("pages", __name__)

PAGES = {
    "privacy": "Privacy",
    "terms": "Terms",
    "refund": "Refunds",
    "contact": "Contact",
}


def operator() -> dict:
    """Who runs the service, as configured (production refuses to start without name and email)."""
    config = current_app.config
    return {
        "name": config.get("OPERATOR_NAME") or "Business Model Fit",
        "email": config.get("OPERATOR_EMAIL") or "contact@localhost",
        "address": config.get("OPERATOR_ADDRESS", ""),
        "refund_url": absolute_url("pages.refund"),
    }


@bp.app_context_processor
def _operator_globals():
    return {"operator": operator(), "legal_pages": PAGES, "absolute_url": absolute_url}


def _page(name: str):
    return render_template(f"pages/{name}.html", page_title=PAGES[name])


@bp.get("/privacy")
def privacy():
    return _page("privacy")


@bp.get("/terms")
def terms():
    return _page("terms")


@bp.get("/refund")
def refund():
    return _page("refund")


@bp.get("/contact")
def contact():
    return _page("contact")


@bp.get("/favicon.ico")
def favicon():
    # Bytes, not a file stream: 134 bytes are not worth an open file per request.
    data = (Path(current_app.static_folder) / "favicon.ico").read_bytes()
    response = Response(data, mimetype="image/x-icon")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
