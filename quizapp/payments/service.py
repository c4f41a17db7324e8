"""Payment use cases: start a checkout, verify a webhook, unlock a report exactly once."""

from __future__ import annotations

import json
import logging

import stripe
from flask import current_app, url_for

from .. import db
from ..errors import BadRequest, Conflict, NotFound
from ..quiz import repository as quiz_repository
from . import repository
from .providers import completed_event, provider_for, sign_payload, webhook_secret

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300
WEBHOOK_MAX_BYTES = 64 * 1024


def _provider():
    return provider_for(
        current_app.config,
        lambda session_id: url_for("payments.test_checkout", session_id=session_id),
    )


def _absolute(endpoint, **values) -> str:
    base = current_app.config.get("PUBLIC_BASE_URL", "").rstrip("/")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def start_checkout(public_id: str) -> str:
    """Create a checkout session for an unpaid result; the URL to send the browser to."""
    attempt = db.run_in_transaction(quiz_repository.attempt_by_public_id, public_id or "")
    if attempt is None:
        raise NotFound("We could not find that result.")
    if attempt["paid_at"] is not None:
        raise Conflict("This report is already unlocked.")
    amount = current_app.config["STRIPE_PRICE_CENTS"]
    provider = _provider()
    # The provider call happens outside any transaction: no connection is held while it answers.
    checkout = provider.create_checkout(
        public_id=public_id,
        amount_cents=amount,
        success_url=_absolute("payments.checkout_return", public_id=public_id)
        + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=_absolute("quiz.result", public_id=public_id),
    )
    db.run_in_transaction(
        repository.insert_checkout_session,
        session_id=checkout.session_id,
        attempt_id=attempt["id"],
        provider=provider.name,
        amount_cents=amount,
    )
    return checkout.url


def handle_webhook(payload: bytes, signature: str | None) -> str:
    """Verify a provider event the Stripe way and apply it; returns what happened."""
    if len(payload) > WEBHOOK_MAX_BYTES:
        raise BadRequest("Payload too large.")
    try:
        text = payload.decode("utf-8")
        stripe.Webhook.construct_event(
            text,
            signature,
            webhook_secret(current_app.config),
            tolerance=WEBHOOK_TOLERANCE_SECONDS,
        )
        event = json.loads(text)  # verified above; plain dicts are easier to read than StripeObjects
    except stripe.SignatureVerificationError:
        log.warning("payments.webhook_bad_signature")
        raise BadRequest("Invalid signature.") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid payload.") from None
    if not isinstance(event, dict) or event.get("type") != "checkout.session.completed":
        return "ignored"
    session_object = (event.get("data") or {}).get("object") or {}
    if not isinstance(event.get("id"), str) or not isinstance(session_object, dict):
        raise BadRequest("Invalid payload.")
    if session_object.get("payment_status") != "paid":
        return "ignored"
    metadata = session_object.get("metadata") or {}
    public_id = session_object.get("client_reference_id") or metadata.get("public_id")
    return db.run_in_transaction(
        _unlock_report,
        event_id=event["id"],
        public_id=public_id or "",
        checkout_session_id=session_object.get("id"),
        amount_cents=session_object.get("amount_total"),
    )


def _unlock_report(cur, *, event_id, public_id, checkout_session_id, amount_cents):
    # FOR UPDATE: parallel deliveries for one attempt queue on its row, then see each other's work.
    attempt = quiz_repository.attempt_by_public_id(cur, public_id, for_update=True)
    if attempt is None:
        log.warning("payments.webhook_unknown_attempt")
        return "unknown"
    recorded = repository.record_payment(
        cur,
        event_id=event_id,
        attempt_id=attempt["id"],
        checkout_session_id=checkout_session_id,
        provider=current_app.config["PAYMENT_PROVIDER"],
        amount_cents=amount_cents,
    )
    if not recorded:
        return "duplicate"
    unlocked = repository.mark_paid(cur, attempt["id"])
    log.info("payments.recorded", extra={"attempt_id": attempt["id"], "unlocked": unlocked})
    return "unlocked" if unlocked else "already_paid"


def offline_checkout_page(session_id: str) -> dict:
    row = db.run_in_transaction(repository.checkout_session, session_id)
    if row is None or row["provider"] != "test":
        raise NotFound("We could not find that checkout.")
    return row


def pay_offline_checkout(session_id: str) -> str:
    """The offline provider's "pay" button: deliver a Stripe-signed completed event; the return URL."""
    row = offline_checkout_page(session_id)
    payload = completed_event(session_id, row["public_id"], row["amount_cents"])
    handle_webhook(payload.encode(), sign_payload(payload, webhook_secret(current_app.config)))
    return url_for("payments.checkout_return", public_id=row["public_id"], session_id=session_id)
