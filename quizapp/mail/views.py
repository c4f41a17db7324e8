"""Mail links: confirm an address (double opt-in) and unsubscribe (also RFC 8058 one-click)."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from ..extensions import csrf
from ..quiz import service as quiz_service
from ..quiz.views import private_page
from . import service

bp = Blueprint("mail", __name__, url_prefix="/mail")


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token):
    # GET only shows a button: mail scanners that open links must not confirm on the reader's behalf.
    service.confirmation(token)
    if request.method == "POST":
        service.confirm_email(token, ranked_for=quiz_service.ranked_models)
    return private_page(render_template("mail/confirm_page.html", token=token, done=request.method == "POST"))


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token):
    service.subscriber_for_unsubscribe(token)
    if request.method == "POST":
        service.unsubscribe(token)
    return private_page(
        render_template("mail/unsubscribe_page.html", token=token, done=request.method == "POST")
    )


# The signed token in the URL is the credential; mail clients' one-click unsubscribe posts no form token.
csrf.exempt(confirm)
csrf.exempt(unsubscribe)
