"""The provider webhook: verify the signature the Stripe way, parse strictly, unlock only a match."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import stripe
from flask import current_app

from .. import db
from ..admin import repository as audit_repository
from ..errors import BadRequest
from ..links import report_link
from ..mail import service as mail_service
from ..quiz import repository as quiz_repository
from . import repository
from .providers import webhook_secret

log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300  # refused when older, and when further in the future (clock skew)
MAX_BYTES = 64 * 1024
PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
EXPIRED_EVENT = "checkout.session.expired"


class PaymentMismatch(Exception):
    """The event does not match a checkout we created: nothing but an audit entry is written."""

    def __init__(self, reasons: list[str]):
        super().__init__(", ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class CheckoutEvent:
    event_id: str
    event_type: str
    session_id: str
    public_id: str | None
    payment_status: str | None
    amount_cents: int | None
    currency: str | None
    payment_intent: str | None
    email: str | None

    def audit_detail(self) -> dict:
        # Alike in shape only to tests/fake_openai.py's settings(): a dict of named fields, no logic.
        return {
            "event_id": self.event_id,
            "checkout_session_id": self.session_id,
            "client_reference_id": self.public_id,
            "payment_status": self.payment_status,
            "amount": self.amount_cents,
            "currency": self.currency,
        }


def verify_event(payload: bytes, signature: str | None) -> dict:
    """The event as a dict when the signature and timestamp are valid; BadRequest otherwise."""
    if len(payload) > MAX_BYTES:
        raise BadRequest("Payload too large.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Invalid payload.") from None
    _check_timestamp(signature or "")
    try:
        stripe.WebhookSignature.verify_header(
            text, signature, webhook_secret(current_app.config), tolerance=TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError:
        log.warning("payments.webhook_bad_signature")
        raise BadRequest("Invalid signature.") from None
    try:
        event = json.loads(text)
    except ValueError:
        raise BadRequest("Invalid payload.") from None
    if not isinstance(event, dict):
        raise BadRequest("Invalid payload: an event is a JSON object.")
    return event


def _check_timestamp(signature: str) -> None:
    """Stripe's library refuses old timestamps only; a future one is refused here as well."""
    stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    try:
        stamp = int(stamps[0])
    except (IndexError, ValueError):
        raise BadRequest("Invalid signature header.") from None
    if abs(time.time() - stamp) > TOLERANCE_SECONDS:
        raise BadRequest("Timestamp outside the tolerance zone.")


def _text(value, name, required=False, limit=255):
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadRequest(f"Invalid payload: {name}.")
    return value


def parse_checkout_event(event: dict) -> CheckoutEvent | None:
    """A checkout event with every field type-checked (BadRequest if malformed); None for other types."""
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise BadRequest("Invalid payload: type.")
    if event_type not in PAID_EVENTS and event_type != EXPIRED_EVENT:
        return None
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BadRequest("Invalid payload: data.object.")
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequest("Invalid payload: metadata.")
    amount = obj.get("amount_total")
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool)):
        raise BadRequest("Invalid payload: amount_total.")
    customer = obj.get("customer_details")
    if customer is not None and not isinstance(customer, dict):
        raise BadRequest("Invalid payload: customer_details.")
    reference = obj.get("client_reference_id")
    if reference is None and metadata:
        reference = metadata.get("public_id")
    return CheckoutEvent(
        event_id=_text(event.get("id"), "id", required=True),
        event_type=event_type,
        session_id=_text(obj.get("id"), "data.object.id", required=True),
        public_id=_text(reference, "client_reference_id", limit=64),
        payment_status=_text(obj.get("payment_status"), "payment_status"),
        amount_cents=amount,
        currency=_text(obj.get("currency"), "currency", limit=8),
        payment_intent=_text(obj.get("payment_intent"), "payment_intent"),
        email=_text((customer or {}).get("email"), "customer_details.email", limit=254),
    )


def handle_webhook(payload: bytes, signature: str | None) -> tuple[str, int | None]:
    """Apply one verified event; (outcome, payment id that needs a refund or None)."""
    checkout = parse_checkout_event(verify_event(payload, signature))
    if checkout is None:
        return "ignored", None
    if checkout.event_type == EXPIRED_EVENT:
        db.run_in_transaction(repository.expire_checkout, checkout.session_id)
        return "expired", None
    try:
        return db.run_in_transaction(_record_payment, checkout=checkout)
    except PaymentMismatch as exc:
        action = "payment.not_paid" if exc.reasons == ["not_paid"] else "payment.mismatch"
        detail = {**checkout.audit_detail(), "reasons": exc.reasons}
        db.run_in_transaction(audit_repository.insert_audit, actor="webhook", action=action, detail=detail)
        log.warning(action, extra={"reasons": exc.reasons})
        return ("not_paid" if action == "payment.not_paid" else "mismatch"), None


def mismatch_reasons(checkout: CheckoutEvent, created: dict | None) -> list[str]:
    """Why this event may not unlock anything (empty when it matches the checkout we created)."""
    if created is None:
        return ["unknown_checkout_session"]
    reasons = []
    if checkout.public_id is not None and checkout.public_id != created["public_id"]:
        reasons.append("other_attempt")
    if checkout.amount_cents != created["amount_cents"]:
        reasons.append("amount")
    if (checkout.currency or "").lower() != created["currency"]:
        reasons.append("currency")
    if checkout.payment_status != "paid":
        reasons.append("not_paid")
    return reasons


def _record_payment(cur, *, checkout: CheckoutEvent):
    created = repository.checkout_session(cur, checkout.session_id)
    reasons = mismatch_reasons(checkout, created)
    if reasons:
        raise PaymentMismatch(reasons)  # rolls back: nothing of this event is kept
    # FOR UPDATE: payments for one attempt (any of its checkouts) queue here; one of them unlocks.
    attempt = quiz_repository.attempt_by_id(cur, created["attempt_id"], for_update=True)
    first = attempt["paid_at"] is None
    payment_id = repository.record_payment(
        cur,
        event_id=checkout.event_id,
        attempt_id=attempt["id"],
        checkout_session_id=checkout.session_id,
        provider=created["provider"],
        amount_cents=checkout.amount_cents,
        currency=created["currency"],
        payment_intent=checkout.payment_intent,
        status="kept" if first else "refund_pending",
    )
    if payment_id is None:
        return "duplicate", None
    repository.complete_checkout(cur, checkout.session_id)
    if not first:
        log.warning("payments.second_payment", extra={"attempt_id": attempt["id"]})
        return "refund_pending", payment_id
    repository.mark_paid(cur, attempt["id"])
    email = _receipt_address(checkout.email)
    if email:
        mail_service.queue_receipt(
            cur,
            attempt=attempt,
            email=email,
            amount_cents=checkout.amount_cents,
            currency=created["currency"],
            reference=checkout.session_id,
            paid_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            report_url=report_link(public_id=attempt["public_id"], link_version=attempt["link_version"]),
        )
    log.info("payments.unlocked", extra={"attempt_id": attempt["id"]})
    return "unlocked", None


def _receipt_address(raw: str | None) -> str | None:
    try:
        return mail_service.normalized_email(raw) if raw else None
    except BadRequest:
        return None  # the provider's address is not one we can mail: the receipt page remains
