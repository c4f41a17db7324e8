"""Payment use cases: one open checkout per attempt, webhook outcomes, refunds of second payments."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from flask import current_app, url_for

from .. import db
from ..admin import repository as audit_repository
from ..errors import Conflict, Forbidden, NotFound
from ..links import absolute_url
from ..quiz import access
from ..quiz import repository as quiz_repository
from . import repository, webhook
from .providers import (
    CURRENCY,
    PaymentUnavailable,
    completed_event,
    provider_for,
    sign_payload,
    webhook_secret,
)

log = logging.getLogger(__name__)


def _provider():
    return provider_for(
        current_app.config,
        lambda session_id: url_for("payments.test_checkout", session_id=session_id),
    )


def _owned_attempt(session, public_id: str) -> dict:
    attempt = db.run_read(quiz_repository.attempt_by_public_id, public_id or "")
    if attempt is None:
        raise NotFound("We could not find that result.")
    if not access.owns(session, attempt):
        raise Forbidden("Only the person who took this quiz can buy its full report. Take the quiz yourself!")
    return attempt


def start_checkout(session, public_id: str) -> str:
    """The URL of this attempt's one open checkout, created once however many clicks arrive."""
    attempt = _owned_attempt(session, public_id)
    if attempt["paid_at"] is not None:
        raise Conflict("This report is already unlocked.")
    stored, total = db.run_in_transaction(repository.open_checkout, attempt["id"])
    if stored is not None:
        return stored["url"]
    amount = current_app.config["STRIPE_PRICE_CENTS"]
    expires = datetime.now(UTC) + timedelta(minutes=current_app.config["CHECKOUT_EXPIRES_MINUTES"])
    provider = _provider()
    # Concurrent clicks see the same count, hence one idempotency key and one provider session.
    # The provider call happens outside any transaction: no connection is held while it answers.
    checkout = provider.create_checkout(
        public_id=public_id,
        amount_cents=amount,
        success_url=absolute_url("payments.checkout_return", public_id=public_id)
        + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=absolute_url("quiz.result", public_id=public_id),
        expires_at=int(expires.timestamp()),
        idempotency_key=f"quizapp-checkout-{attempt['id']}-{total + 1}",
    )
    db.run_in_transaction(
        repository.insert_checkout_session,
        session_id=checkout.session_id,
        attempt_id=attempt["id"],
        provider=provider.name,
        amount_cents=amount,
        currency=CURRENCY,
        url=checkout.url,
        expires_at=expires,
    )
    return checkout.url


def receive_webhook(payload: bytes, signature: str | None) -> str:
    """Apply a provider event; a second payment for a paid attempt is refunded at once."""
    outcome, refund_payment_id = webhook.handle_webhook(payload, signature)
    if refund_payment_id is not None:
        outcome = "refunded" if refund_payment(refund_payment_id, actor="webhook") else "refund_failed"
    return outcome


def refund_payment(payment_id: int, *, actor: str) -> bool:
    """Refund a second payment through the provider; on failure it waits for the admin's refund action."""
    payment = db.run_read(repository.payment, payment_id)
    if payment is None:
        raise NotFound("No such payment.")
    if payment["status"] not in ("refund_pending", "refund_failed"):
        raise Conflict("This payment is not waiting for a refund.")
    # The provider replays an idempotent answer, failures included: an admin's retry needs a new key.
    key = (
        f"quizapp-refund-{payment_id}"
        if actor == "webhook"
        else f"quizapp-refund-{payment_id}-{time.time_ns()}"
    )
    provider = _provider()
    try:
        refund_id = provider.refund(payment_intent=payment["payment_intent"], idempotency_key=key)
    except PaymentUnavailable:
        refund_id = None
    detail = {"payment_id": payment_id, "checkout_session_id": payment["checkout_session_id"]}

    def record(cur):
        error = None if refund_id else "the provider refused or did not answer"
        repository.set_refund_result(cur, payment_id, refund_id=refund_id, error=error)
        action = "payment.refunded" if refund_id else "payment.refund_failed"
        audit_repository.insert_audit(
            cur, actor=actor, action=action, detail={**detail, "refund_id": refund_id}
        )

    db.run_in_transaction(record)
    log.info("payments.refund", extra={"payment_id": payment_id, "ok": bool(refund_id)})
    return refund_id is not None


def receipt_page(session, public_id: str, link_token: str | None) -> dict:
    """The receipt for the buyer (session or mailed link); None when this visitor may not see it."""
    attempt = db.run_read(quiz_repository.attempt_by_public_id, public_id or "")
    if attempt is None:
        raise NotFound("We could not find that result.")
    if not access.may_read_report(session, attempt, link_token):
        raise Forbidden("This receipt belongs to the buyer of the report.")
    payment = db.run_read(repository.kept_payment, attempt["id"])
    if payment is None:
        raise NotFound("We could not find the payment for this report.")
    return {"attempt": attempt, "payment": payment, "link_key": link_token}


def payments_attention() -> list[dict]:
    """Second payments whose refund is pending or failed: the admin page lists them with a refund button."""
    return db.run_read(repository.payments_needing_refund)


def payment_figures() -> dict:
    """For health: webhook mismatches (24 h) and payments waiting for a refund."""
    return db.run_read(repository.payment_figures)


def offline_checkout_page(session_id: str) -> dict:
    row = db.run_read(repository.checkout_session, session_id)
    if row is None or row["provider"] != "test":
        raise NotFound("We could not find that checkout.")
    return row


def pay_offline_checkout(session_id: str, email: str | None) -> str:
    """The offline provider's "pay" button: deliver a Stripe-signed completed event; the return URL."""
    row = offline_checkout_page(session_id)
    payload = completed_event(
        session_id, row["public_id"], row["amount_cents"], currency=row["currency"], email=email or None
    )
    receive_webhook(payload.encode(), sign_payload(payload, webhook_secret(current_app.config)))
    return url_for("payments.checkout_return", public_id=row["public_id"], session_id=session_id)
