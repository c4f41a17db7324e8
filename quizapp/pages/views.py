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


def _page_view(name: str):
    def page():
        return render_template(f"pages/{name}.html", page_title=PAGES[name])

    page.__name__ = name
    return page


for _name in PAGES:  # /privacy, /terms, /refund, /contact: endpoints pages.privacy ...
    bp.add_url_rule(f"/{_name}", endpoint=_name, view_func=_page_view(_name), methods=["GET"])


@bp.get("/favicon.ico")
def favicon():
    # Bytes, not a file stream: 134 bytes are not worth an open file per request.
    data = (Path(current_app.static_folder) / "favicon.ico").read_bytes()
    response = Response(data, mimetype="image/x-icon")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
