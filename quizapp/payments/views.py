"""Payment endpoints: checkout, the provider webhook, the offline test checkout, return and receipt."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from ..errors import NotFound
from ..extensions import csrf
from ..quiz import service as quiz_service
from ..quiz.views import private_page
from . import service

bp = Blueprint("payments", __name__, url_prefix="/pay")


@bp.post("/checkout")
def checkout():
    return redirect(service.start_checkout(session, request.form.get("public_id", "")), 303)


@bp.post("/webhook")
def webhook():
    outcome = service.receive_webhook(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    return jsonify(received=True, outcome=outcome)


csrf.exempt(webhook)  # signed by the provider instead; browsers never post here


@bp.route("/test/<session_id>", methods=["GET", "POST"])
def test_checkout(session_id):
    if current_app.config["PAYMENT_PROVIDER"] != "test":
        raise NotFound()
    if request.method == "POST":
        return redirect(service.pay_offline_checkout(session_id, request.form.get("email")), 303)
    return render_template(
        "payments/test_checkout.html",
        checkout=service.offline_checkout_page(session_id),
    )


@bp.get("/return/<public_id>")
def checkout_return(public_id):
    # A fresh session id after payment: the pre-payment id can no longer ride the paid session.
    current_app.session_interface.regenerate(session)
    attempt = quiz_service.load_attempt(public_id)
    if attempt["paid_at"] is not None:
        return redirect(url_for("payments.receipt", public_id=public_id), 303)
    return render_template("payments/pending.html", public_id=public_id), 202


@bp.get("/receipt/<public_id>")
def receipt(public_id):
    page = service.receipt_page(session, public_id, request.args.get("key"))
    return private_page(render_template("payments/receipt.html", **page))
